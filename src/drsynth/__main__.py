from drsynth.cli import main

main()
