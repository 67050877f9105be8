import numpy as np
import pytest

from phototag.errors import SchemeError
from phototag.ages.groups import PRESETS, estimate, get_scheme


def one_hot(age: int) -> np.ndarray:
    p = np.zeros(101)
    p[age] = 1.0
    return p


def test_default_scheme_is_the_ten_groups_of_the_reference_study():
    s = get_scheme(None)
    assert [(g.name, g.min, g.max) for g in s.groups] == [
        ("Baby", 0, 1), ("Toddler", 2, 3), ("Child", 4, 8), ("Adolescent", 9, 13), ("Teenager", 14, 18),
        ("Young Adult", 19, 24), ("Adult", 25, 34), ("Mature Adult", 35, 44), ("Middle Age", 45, 58),
        ("Senior", 59, 100),
    ]


@pytest.mark.parametrize("name,age,group", [("three", 29, "Young"), ("three", 30, "Middle"), ("three", 60, "Old"),
                                            ("four", 17, "Minor"), ("four", 18, "Young Adult"),
                                            ("four", 80, "Elderly"), ("adience", 2, "0-2"), ("adience", 61, "60+")])
def test_presets_put_ages_in_the_right_group(name, age, group):
    assert estimate(one_hot(age), PRESETS[name]).group == group


def test_group_probability_is_the_sum_over_its_ages():
    p = np.zeros(101)
    p[1], p[2], p[3], p[5] = 0.2, 0.3, 0.3, 0.2
    e = estimate(p, get_scheme("ten"))
    assert e.age == pytest.approx(0.2 * 1 + 0.3 * 2 + 0.3 * 3 + 0.2 * 5)
    assert e.group == "Toddler"  # the group holding the expected age, 2.7
    assert e.group_prob == pytest.approx(0.6)
    assert e.group_probs == pytest.approx({"Baby": 0.2, "Toddler": 0.6, "Child": 0.2, **{
        g: 0.0 for g in ("Adolescent", "Teenager", "Young Adult", "Adult", "Mature Adult", "Middle Age", "Senior")}})


def test_the_group_follows_the_age_shown_not_the_largest_mass():
    p = np.zeros(101)
    p[0], p[1], p[3], p[4], p[5] = 0.3, 0.25, 0.15, 0.15, 0.15  # Baby holds 55%, but the age is 2.1
    e = estimate(p, get_scheme("ten"))
    assert round(e.age) == 2 and e.group == "Toddler" and e.group_prob == pytest.approx(0.15)


def test_interval_holds_the_central_80_percent():
    p = np.zeros(101)
    p[10:21] = 1 / 11
    e = estimate(p, get_scheme("ten"))
    assert (e.low, e.high) == (11, 19)


def test_user_scheme_from_toml(tmp_path):
    f = tmp_path / "school.toml"
    f.write_text('name = "school"\n[[groups]]\nname = "Preschool"\nmin = 0\nmax = 5\n'
                 '[[groups]]\nname = "School"\nmin = 6\nmax = 17\n[[groups]]\nname = "Grown-up"\nmin = 18\n')
    s = get_scheme(str(f))
    assert s.name == "school"
    assert estimate(one_hot(4), s).group == "Preschool"
    assert estimate(one_hot(40), s).group == "Grown-up"


@pytest.mark.parametrize("body,message", [
    ('[[groups]]\nname = "A"\nmin = 0\nmax = 10\n[[groups]]\nname = "B"\nmin = 12\n', "must start at 11"),
    ('[[groups]]\nname = "A"\nmin = 1\n', "must start at 0"),
    ("name = 3\n[[oops]]\n", "needs a [[groups]] table"),
    ("not toml at all [", "not valid TOML"),
])
def test_malformed_schemes_are_refused_with_a_reason(tmp_path, body, message):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(SchemeError, match=message.replace("[", r"\[")):
        get_scheme(str(f))


def test_unknown_scheme_names_the_choices():
    with pytest.raises(SchemeError, match="unknown scheme 'nine': use one of ten, three, four, adience"):
        get_scheme("nine")


def test_estimate_many_gives_what_estimate_gives_one_by_one():
    import numpy as np

    from phototag.ages.groups import estimate, estimate_many, get_scheme

    rng = np.random.default_rng(0)
    dists = rng.dirichlet(np.full(101, 0.05), 300)
    for name, point in (("ten", "mean"), ("three", "mean"), ("adience", "mean"), ("ten", "mode"), ("adience", "mode")):
        scheme = get_scheme(name)
        ages, lows, highs, idx, probs = estimate_many(dists, scheme, point=point)
        for k, d in enumerate(dists):
            e = estimate(d, scheme, point=point)
            assert (e.low, e.high, e.group) == (lows[k], highs[k], scheme.names[idx[k]])
            assert abs(e.age - ages[k]) < 1e-9 and abs(e.group_prob - probs[k]) < 1e-9


def test_the_mode_shows_the_most_probable_year_and_groups_by_it():
    """A child's distribution, sharp at 2 with a long tail towards adults: the mean reads a Child of
    about 7, the mode the Toddler of 2 that is most probable."""
    from phototag.ages.groups import point_ages

    p = np.zeros(101)
    p[2], p[1], p[3] = 0.5, 0.1, 0.1
    p[8:30] = 0.3 / 22
    mean = estimate(p, get_scheme("ten"))
    mode = estimate(p, get_scheme("ten"), point="mode")
    assert round(mean.age) == 7 and mean.group == "Child"
    assert mode.age == 2.0 and mode.group == "Toddler" and mode.group_prob == pytest.approx(0.6)
    assert (mode.low, mode.high) == (mean.low, mean.high)  # the interval does not depend on the rule
    assert point_ages(np.stack([p, one_hot(60)]), "mode").tolist() == [2.0, 60.0]
    with pytest.raises(ValueError, match="unknown point estimate 'middle': use one of mean, mode, median, mode-or-median"):
        point_ages(p, "middle")


def test_an_age_chosen_before_is_kept_and_grouped():
    """The index stores the age a scan showed; regrouping under another scheme keeps it."""
    from phototag.ages.groups import estimate_many

    p = np.zeros(101)
    p[6], p[40] = 0.45, 0.55
    e = estimate(p, get_scheme("ten"), age=6.0)
    assert e.age == 6.0 and e.group == "Child" and e.group_prob == pytest.approx(0.45)
    ages, _, _, idx, probs = estimate_many(np.stack([p, p]), get_scheme("ten"), ages=np.array([6.0, np.nan]),
                                           point="mode")
    assert ages.tolist() == [6.0, 40.0]
    assert [get_scheme("ten").names[i] for i in idx] == ["Child", "Mature Adult"]
    assert probs == pytest.approx([0.45, 0.55])


def test_the_median_is_the_first_age_holding_half_the_mass():
    from phototag.ages.groups import point_ages

    p = np.zeros((3, 101))
    p[0, [2, 3, 40]] = [0.3, 0.3, 0.4]  # mode 40, median 3
    p[1, [10, 20]] = [0.5, 0.5]  # half the mass is reached at 10
    p[2, 60:80] = 2.0  # unnormalised: 20 equal years, half by 69
    assert point_ages(p, "median").tolist() == [3, 10, 69]
    assert point_ages(p, "mode").tolist() == [40, 10, 60]


def test_mode_or_median_reads_a_child_by_the_mode_and_an_adult_by_the_median():
    from phototag.ages.groups import point_ages

    p = np.zeros((2, 101))
    p[0, [4, 5, 30]] = [0.35, 0.3, 0.35]  # a child: the mode (4) is under 13, the median is 5
    p[1, 30:71] = np.linspace(2, 1, 41)  # an adult: wide, the mode at 30, the median later
    median = point_ages(p, "median")
    assert point_ages(p, "mode-or-median").tolist() == [4.0, median[1]]
    assert median[1] > 40 and point_ages(p, "mode")[1] == 30
