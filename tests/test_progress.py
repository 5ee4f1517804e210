from drsynth.progress import count_bar, log_every


def test_log_every_prints_the_first_and_last_call_and_throttles_between(capsys):
    report = log_every(3600.0, "curate train")
    for done in (1, 2, 3, 10):
        report(done, 10)
    assert capsys.readouterr().out.splitlines() == ["curate train: 1/10", "curate train: 10/10"]


def test_count_bar_is_none_when_disabled_and_a_callback_otherwise():
    with count_bar("render", enabled=False) as cb:
        assert cb is None
    with count_bar("render") as cb:
        assert callable(cb)
        cb(3, 5)  # a live rich bar takes updates with a total it did not know at the start
