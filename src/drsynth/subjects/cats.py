"""Procedural cats: named breed presets and continuous blends between them (generator module)."""

from __future__ import annotations

from drsynth.subjects.breeds import BreedPreset, make_breed_subjects
from drsynth.subjects.coats import Coat
from drsynth.subjects.quadruped import Anatomy

#: The typical domestic cat every preset starts from.
BASE = Anatomy(
    species="cat",
    shoulder_height=0.25,
    body_length_ratio=1.27,
    chest_depth_ratio=0.56,
    girth_ratio=0.85,
    waist_ratio=0.85,
    rump_rise=0.04,
    leg_thickness=0.14,
    paw_size=1.1,
    neck_length_ratio=0.45,
    neck_thickness=0.42,
    neck_angle_deg=60.0,
    head_length=0.12,
    skull_width_ratio=0.92,
    skull_height_ratio=0.82,
    muzzle_frac=0.26,
    muzzle_width_ratio=0.55,
    muzzle_height_ratio=0.55,
    stop=0.5,
    cheek=0.5,
    eye_size=0.12,
    eye_spacing=0.5,
    eye_forward=0.75,
    ear_length=0.5,
    ear_width=0.95,
    ear_floppiness=0.0,
    ear_tilt_deg=15.0,
    ear_roundness=0.2,
    ear_set=0.35,
    tail_length_ratio=0.9,
    tail_thickness=0.24,
    tail_carriage_deg=-5.0,
    tail_curl_deg=60.0,
    fluff=0.2,
)

# Colours (linear-ish RGB).
BROWN_TABBY = (0.50, 0.40, 0.28)
SILVER = (0.62, 0.62, 0.6)
ORANGE = (0.78, 0.45, 0.18)
CREAM = (0.88, 0.78, 0.62)
BLACK = (0.045, 0.04, 0.04)
GREY_BLUE = (0.42, 0.44, 0.47)
WHITE = (0.93, 0.92, 0.89)
CHOC = (0.3, 0.19, 0.12)
SEAL = (0.2, 0.13, 0.09)
RUDDY = (0.62, 0.38, 0.2)
DARK = (0.08, 0.06, 0.05)
GREEN_EYE = (0.35, 0.6, 0.15)
GOLD_EYE = (0.78, 0.6, 0.12)
COPPER_EYE = (0.8, 0.45, 0.1)
BLUE_EYE = (0.25, 0.45, 0.8)
PINK = (0.78, 0.48, 0.48)
BRICK = (0.55, 0.28, 0.22)


def _c(pattern, base, **kw) -> Coat:
    kw.setdefault("pupil", "slit")
    kw.setdefault("iris", GREEN_EYE)
    kw.setdefault("nose", PINK)
    kw.setdefault("inner_ear", (0.82, 0.6, 0.58))
    return Coat(pattern=pattern, base=base, **kw)


KITTEN = {
    "shoulder_height": 0.15,
    "body_length_ratio": 1.20,
    "chest_depth_ratio": 0.54,
    "head_length": 0.085,
    "skull_width_ratio": 1.0,
    "skull_height_ratio": 0.9,
    "muzzle_frac": 0.22,
    "eye_size": 0.15,
    "ear_length": 0.55,
    "leg_thickness": 0.16,
    "tail_length_ratio": 0.75,
    "tail_thickness": 0.2,
    "fluff": 0.45,
}

PRESETS: dict[str, BreedPreset] = {
    p.name: p
    for p in [
        BreedPreset("domestic_shorthair_tabby", {}, _c("tabby", BROWN_TABBY, secondary=DARK, nose=BRICK)),
        BreedPreset(
            "classic_tabby",
            {"girth_ratio": 0.9},
            _c("classic_tabby", BROWN_TABBY, secondary=DARK, iris=GOLD_EYE, nose=BRICK),
        ),
        BreedPreset("silver_tabby", {}, _c("tabby", SILVER, secondary=(0.08, 0.08, 0.08))),
        BreedPreset(
            "orange_tabby",
            {"cheek": 0.6},
            _c("tabby", ORANGE, secondary=(0.5, 0.24, 0.08), iris=GOLD_EYE, white=0.15),
        ),
        BreedPreset("cream_tabby", {}, _c("tabby", CREAM, secondary=(0.72, 0.55, 0.38), iris=COPPER_EYE)),
        BreedPreset("tabby_and_white", {}, _c("tabby", BROWN_TABBY, secondary=DARK, white=0.45, nose=BRICK)),
        BreedPreset("tuxedo", {}, _c("bicolor", BLACK, white=0.4, iris=GOLD_EYE)),
        # Kittens: big heads, eyes and ears on small round bodies (a large share of real cat photos).
        BreedPreset(
            "kitten_tabby",
            {**KITTEN},
            _c("tabby", BROWN_TABBY, secondary=DARK, nose=BRICK, iris=(0.4, 0.5, 0.6), fur_length=0.4),
        ),
        BreedPreset(
            "kitten_grey_tabby",
            {**KITTEN},
            _c("tabby", SILVER, secondary=(0.1, 0.1, 0.1), iris=(0.4, 0.5, 0.6), fur_length=0.4),
        ),
        BreedPreset(
            "kitten_orange",
            {**KITTEN},
            _c(
                "tabby",
                ORANGE,
                secondary=(0.52, 0.26, 0.09),
                white=0.2,
                iris=(0.45, 0.55, 0.6),
                fur_length=0.4,
            ),
        ),
        BreedPreset(
            "kitten_black",
            {**KITTEN},
            _c("solid", BLACK, iris=(0.45, 0.55, 0.6), nose=DARK, belly_light=0.0, fur_length=0.4),
        ),
        BreedPreset(
            "kitten_tuxedo",
            {**KITTEN},
            _c("bicolor", BLACK, white=0.45, iris=(0.45, 0.55, 0.6), fur_length=0.4),
        ),
        BreedPreset(
            "kitten_calico",
            {**KITTEN},
            _c("calico", WHITE, secondary=BLACK, tertiary=(0.78, 0.45, 0.15), white=0.5, fur_length=0.4),
        ),
        BreedPreset(
            "tuxedo_longhair",
            {"fluff": 0.6},
            _c("bicolor", BLACK, white=0.35, iris=GREEN_EYE, fur_length=0.7),
        ),
        BreedPreset("black_and_white", {}, _c("bicolor", BLACK, white=0.65, iris=GOLD_EYE, variation=0.8)),
        BreedPreset(
            "black_longhair",
            {"fluff": 0.65},
            _c("solid", (0.05, 0.045, 0.045), iris=COPPER_EYE, nose=DARK, belly_light=0.05, fur_length=0.7),
        ),
        BreedPreset(
            "black_smoke",
            {"fluff": 0.4},
            _c("solid", (0.1, 0.1, 0.11), iris=GOLD_EYE, nose=DARK, belly_light=0.3, fur_length=0.45),
        ),
        BreedPreset("grey_tabby_and_white", {}, _c("tabby", SILVER, secondary=(0.1, 0.1, 0.1), white=0.4)),
        BreedPreset(
            "orange_and_white",
            {},
            _c("tabby", ORANGE, secondary=(0.5, 0.24, 0.08), white=0.45, iris=GOLD_EYE),
        ),
        BreedPreset(
            "dilute_calico",
            {},
            _c("calico", WHITE, secondary=(0.42, 0.44, 0.47), tertiary=(0.85, 0.7, 0.55), white=0.5),
        ),
        BreedPreset(
            "torbie",
            {},
            _c(
                "tortoiseshell",
                (0.4, 0.3, 0.2),
                secondary=(0.12, 0.09, 0.07),
                tertiary=(0.7, 0.45, 0.2),
                iris=GOLD_EYE,
            ),
        ),
        BreedPreset(
            "black_cat", {"fluff": 0.15}, _c("solid", BLACK, iris=GOLD_EYE, nose=DARK, belly_light=0.0)
        ),
        BreedPreset("white_cat", {}, _c("solid", WHITE, iris=BLUE_EYE, belly_light=0.0)),
        BreedPreset(
            "tortoiseshell",
            {},
            _c(
                "tortoiseshell", BLACK, secondary=BLACK, tertiary=(0.7, 0.38, 0.12), iris=GOLD_EYE, nose=BRICK
            ),
        ),
        BreedPreset(
            "calico", {}, _c("calico", WHITE, secondary=BLACK, tertiary=(0.78, 0.45, 0.15), white=0.55)
        ),
        BreedPreset("grey_and_white", {}, _c("bicolor", GREY_BLUE, white=0.5, iris=GOLD_EYE)),
        BreedPreset(
            "siamese",
            {
                "body_length_ratio": 1.35,
                "chest_depth_ratio": 0.42,
                "head_length": 0.105,
                "skull_width_ratio": 0.72,
                "muzzle_frac": 0.36,
                "ear_length": 0.62,
                "ear_width": 0.9,
                "tail_thickness": 0.12,
                "fluff": 0.05,
                "cheek": 0.2,
            },
            _c(
                "colorpoint",
                (0.88, 0.82, 0.7),
                secondary=SEAL,
                iris=BLUE_EYE,
                nose=DARK,
                inner_ear=(0.3, 0.22, 0.18),
            ),
        ),
        BreedPreset(
            "balinese",
            {
                "body_length_ratio": 1.32,
                "head_length": 0.1,
                "skull_width_ratio": 0.76,
                "muzzle_frac": 0.34,
                "ear_length": 0.6,
                "fluff": 0.5,
            },
            _c("colorpoint", (0.9, 0.86, 0.76), secondary=(0.35, 0.3, 0.35), iris=BLUE_EYE, fur_length=0.6),
        ),
        BreedPreset(
            "birman",
            {"fluff": 0.55, "girth_ratio": 0.95},
            _c(
                "colorpoint",
                (0.9, 0.85, 0.72),
                secondary=SEAL,
                white=0.18,
                iris=BLUE_EYE,
                fur_length=0.6,
                nose=DARK,
            ),
        ),
        BreedPreset(
            "ragdoll",
            {"shoulder_height": 0.28, "fluff": 0.7, "girth_ratio": 1.0, "tail_thickness": 0.22},
            _c(
                "colorpoint",
                (0.9, 0.86, 0.78),
                secondary=(0.32, 0.26, 0.22),
                white=0.3,
                iris=BLUE_EYE,
                fur_length=0.7,
            ),
        ),
        BreedPreset(
            "himalayan",
            {
                "muzzle_frac": 0.15,
                "stop": 0.95,
                "fluff": 0.85,
                "girth_ratio": 1.0,
                "ear_length": 0.36,
                "ear_roundness": 0.6,
                "skull_width_ratio": 1.0,
                "cheek": 0.8,
            },
            _c("colorpoint", (0.92, 0.88, 0.8), secondary=SEAL, iris=BLUE_EYE, fur_length=0.9, nose=DARK),
        ),
        BreedPreset(
            "persian",
            {
                "muzzle_frac": 0.14,
                "stop": 1.0,
                "fluff": 0.9,
                "girth_ratio": 1.0,
                "ear_length": 0.34,
                "ear_roundness": 0.6,
                "skull_width_ratio": 1.02,
                "cheek": 0.85,
                "leg_thickness": 0.16,
                "tail_thickness": 0.24,
            },
            _c("solid", (0.9, 0.88, 0.84), iris=COPPER_EYE, fur_length=1.0),
        ),
        BreedPreset(
            "persian_red",
            {
                "muzzle_frac": 0.15,
                "stop": 1.0,
                "fluff": 0.9,
                "girth_ratio": 1.0,
                "ear_length": 0.35,
                "ear_roundness": 0.6,
                "skull_width_ratio": 1.0,
                "cheek": 0.85,
                "tail_thickness": 0.24,
            },
            _c(
                "tabby",
                ORANGE,
                secondary=(0.55, 0.28, 0.1),
                iris=COPPER_EYE,
                fur_length=1.0,
                stripe_scale=1.4,
            ),
        ),
        BreedPreset(
            "exotic_shorthair",
            {
                "muzzle_frac": 0.16,
                "stop": 0.95,
                "girth_ratio": 1.0,
                "ear_length": 0.36,
                "ear_roundness": 0.5,
                "skull_width_ratio": 1.02,
                "cheek": 0.9,
                "fluff": 0.35,
            },
            _c("solid", (0.5, 0.5, 0.52), iris=COPPER_EYE),
        ),
        BreedPreset(
            "british_shorthair",
            {
                "girth_ratio": 1.0,
                "cheek": 0.95,
                "skull_width_ratio": 1.0,
                "muzzle_frac": 0.24,
                "ear_length": 0.4,
                "ear_roundness": 0.5,
                "leg_thickness": 0.16,
                "fluff": 0.35,
                "shoulder_height": 0.27,
            },
            _c("solid", GREY_BLUE, iris=COPPER_EYE, nose=(0.35, 0.35, 0.38), belly_light=0.05),
        ),
        BreedPreset(
            "russian_blue",
            {"body_length_ratio": 1.32, "ear_length": 0.58, "skull_width_ratio": 0.82, "fluff": 0.2},
            _c("solid", (0.45, 0.48, 0.52), iris=GREEN_EYE, nose=(0.35, 0.35, 0.4), belly_light=0.05),
        ),
        BreedPreset(
            "chartreux",
            {"girth_ratio": 1.0, "cheek": 0.8, "leg_thickness": 0.15, "fluff": 0.35},
            _c("solid", (0.5, 0.53, 0.56), iris=COPPER_EYE, nose=(0.35, 0.35, 0.4), belly_light=0.05),
        ),
        BreedPreset(
            "korat",
            {"skull_width_ratio": 0.86, "eye_size": 0.19, "ear_length": 0.56},
            _c("solid", (0.48, 0.5, 0.54), iris=GREEN_EYE, belly_light=0.0),
        ),
        BreedPreset(
            "bombay",
            {"eye_size": 0.18, "skull_width_ratio": 0.92, "fluff": 0.05},
            _c("solid", (0.03, 0.03, 0.03), iris=COPPER_EYE, nose=DARK, belly_light=0.0),
        ),
        BreedPreset(
            "maine_coon",
            {
                "shoulder_height": 0.32,
                "body_length_ratio": 1.35,
                "fluff": 0.75,
                "ear_length": 0.62,
                "ear_width": 0.8,
                "muzzle_frac": 0.3,
                "muzzle_height_ratio": 0.62,
                "tail_thickness": 0.26,
                "tail_length_ratio": 1.15,
            },
            _c(
                "tabby",
                (0.45, 0.35, 0.24),
                secondary=DARK,
                white=0.25,
                fur_length=0.8,
                iris=GOLD_EYE,
                nose=BRICK,
            ),
        ),
        BreedPreset(
            "norwegian_forest",
            {"shoulder_height": 0.3, "fluff": 0.8, "ear_length": 0.56, "tail_thickness": 0.27},
            _c("tabby", SILVER, secondary=(0.15, 0.15, 0.15), white=0.35, fur_length=0.85, stripe_scale=1.3),
        ),
        BreedPreset(
            "siberian",
            {"shoulder_height": 0.3, "fluff": 0.8, "girth_ratio": 0.95, "tail_thickness": 0.25},
            _c(
                "tabby",
                (0.55, 0.45, 0.32),
                secondary=(0.18, 0.13, 0.09),
                fur_length=0.85,
                iris=GOLD_EYE,
                nose=BRICK,
            ),
        ),
        BreedPreset(
            "turkish_van",
            {"fluff": 0.45},
            _c("bicolor", WHITE, white=0.0, iris=COPPER_EYE, fur_length=0.5),
        ),
        BreedPreset(
            "turkish_angora",
            {"body_length_ratio": 1.32, "fluff": 0.55, "ear_length": 0.6, "skull_width_ratio": 0.8},
            _c("solid", WHITE, iris=BLUE_EYE, fur_length=0.6, belly_light=0.0),
        ),
        BreedPreset(
            "abyssinian",
            {
                "body_length_ratio": 1.32,
                "ear_length": 0.66,
                "ear_width": 0.95,
                "skull_width_ratio": 0.8,
                "fluff": 0.05,
                "muzzle_frac": 0.32,
            },
            _c("ticked", RUDDY, secondary=(0.25, 0.14, 0.07), iris=GOLD_EYE, nose=BRICK),
        ),
        BreedPreset(
            "somali",
            {
                "body_length_ratio": 1.32,
                "ear_length": 0.64,
                "ear_width": 0.95,
                "skull_width_ratio": 0.8,
                "fluff": 0.5,
                "tail_thickness": 0.24,
            },
            _c(
                "ticked",
                (0.66, 0.4, 0.2),
                secondary=(0.3, 0.16, 0.07),
                iris=GREEN_EYE,
                fur_length=0.55,
                nose=BRICK,
            ),
        ),
        BreedPreset(
            "bengal",
            {
                "body_length_ratio": 1.41,
                "shoulder_height": 0.28,
                "fluff": 0.05,
                "muzzle_frac": 0.32,
                "ear_length": 0.46,
            },
            _c(
                "spotted",
                (0.75, 0.52, 0.26),
                secondary=(0.12, 0.07, 0.04),
                spot_scale=0.9,
                iris=GREEN_EYE,
                nose=BRICK,
            ),
        ),
        BreedPreset(
            "ocicat",
            {"body_length_ratio": 1.35, "shoulder_height": 0.28, "fluff": 0.05},
            _c("spotted", (0.66, 0.52, 0.34), secondary=(0.2, 0.12, 0.07), spot_scale=1.0, iris=GOLD_EYE),
        ),
        BreedPreset(
            "egyptian_mau",
            {"body_length_ratio": 1.35, "eye_size": 0.18, "fluff": 0.05},
            _c("spotted", (0.66, 0.66, 0.62), secondary=(0.1, 0.1, 0.1), spot_scale=1.3, iris=GREEN_EYE),
        ),
        BreedPreset(
            "savannah",
            {
                "shoulder_height": 0.34,
                "body_length_ratio": 1.32,
                "ear_length": 0.72,
                "ear_width": 0.95,
                "leg_thickness": 0.12,
                "skull_width_ratio": 0.78,
                "fluff": 0.05,
            },
            _c("spotted", (0.78, 0.62, 0.36), secondary=(0.06, 0.05, 0.04), spot_scale=1.4, iris=GOLD_EYE),
        ),
        BreedPreset(
            "burmese",
            {"girth_ratio": 0.95, "skull_width_ratio": 0.95, "eye_size": 0.18, "fluff": 0.05},
            _c("solid", (0.28, 0.18, 0.11), iris=GOLD_EYE, nose=(0.2, 0.12, 0.1), belly_light=0.15),
        ),
        BreedPreset(
            "tonkinese",
            {"fluff": 0.05},
            _c("colorpoint", (0.55, 0.42, 0.3), secondary=(0.25, 0.16, 0.1), iris=(0.3, 0.55, 0.5)),
        ),
        BreedPreset(
            "havana_brown",
            {"muzzle_frac": 0.33, "ear_length": 0.58, "fluff": 0.05},
            _c("solid", CHOC, iris=GREEN_EYE, nose=(0.4, 0.24, 0.2)),
        ),
        BreedPreset(
            "oriental_shorthair",
            {
                "body_length_ratio": 1.41,
                "chest_depth_ratio": 0.41,
                "head_length": 0.11,
                "skull_width_ratio": 0.66,
                "muzzle_frac": 0.4,
                "ear_length": 0.78,
                "ear_width": 1.0,
                "ear_tilt_deg": 25.0,
                "fluff": 0.0,
                "cheek": 0.1,
            },
            _c("solid", (0.2, 0.2, 0.2), iris=GREEN_EYE),
        ),
        BreedPreset(
            "scottish_fold",
            {
                "ear_floppiness": 0.55,
                "ear_length": 0.32,
                "ear_roundness": 0.8,
                "skull_width_ratio": 1.0,
                "cheek": 0.8,
                "eye_size": 0.19,
                "girth_ratio": 0.95,
            },
            _c("tabby", (0.62, 0.6, 0.57), secondary=(0.2, 0.2, 0.2), white=0.25, iris=GOLD_EYE),
        ),
        BreedPreset(
            "manx",
            {"tail_length_ratio": 0.08, "rump_rise": 0.1, "girth_ratio": 0.95},
            _c("tabby", (0.5, 0.38, 0.26), secondary=DARK, iris=GOLD_EYE),
        ),
        BreedPreset(
            "american_shorthair",
            {"girth_ratio": 0.95, "cheek": 0.7, "fluff": 0.2},
            _c("classic_tabby", SILVER, secondary=(0.06, 0.06, 0.06), iris=GREEN_EYE, nose=BRICK),
        ),
        BreedPreset(
            "snowshoe",
            {},
            _c("colorpoint", (0.86, 0.8, 0.7), secondary=(0.28, 0.2, 0.15), white=0.35, iris=BLUE_EYE),
        ),
        BreedPreset(
            "devon_rex",
            {
                "ear_length": 0.8,
                "ear_width": 1.0,
                "ear_set": 0.6,
                "skull_width_ratio": 0.85,
                "muzzle_frac": 0.25,
                "eye_size": 0.2,
                "fluff": 0.0,
            },
            _c(
                "tortoiseshell",
                BLACK,
                secondary=(0.15, 0.12, 0.1),
                tertiary=(0.6, 0.4, 0.25),
                curly=0.4,
                iris=GOLD_EYE,
            ),
        ),
    ]
}


def preset_names() -> list[str]:
    return list(PRESETS)


def make_subjects(class_name: str, *, breeds: list[str] | None, blends: int, seed: int):
    """Subjects for `class_name`: the named presets (all when `breeds` is None) plus `blends` continuous
    mixtures of two random presets (deterministic from `seed`)."""
    return make_breed_subjects(class_name, "cat", BASE, PRESETS, breeds=breeds, blends=blends, seed=seed)
