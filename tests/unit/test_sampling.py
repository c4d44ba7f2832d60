import pytest

from hearth.engine.sampling import SamplingParams
from hearth.errors import ValidationError


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("temperature", "hot"),
        ("top_k", -1),
        ("top_k", 1.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", -0.01),
        ("typical_p", 0.0),
        ("repeat_penalty", 0.0),
        ("repeat_last_n", -2),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3.0),
        ("seed", -1),
        ("seed", 2**32 - 1),
        ("max_tokens", 0),
        ("max_tokens", True),
        ("stop", ("",)),
        ("stop", ("x" * 300,)),
        ("stop", tuple(str(i) for i in range(17))),
    ],
)
def test_invalid_value_names_the_parameter(param: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        SamplingParams(**{param: value})  # type: ignore[arg-type]
    assert caught.value.param == param
    assert param in str(caught.value)


def test_defaults_are_valid_and_not_greedy() -> None:
    params = SamplingParams()
    assert not params.greedy
    assert SamplingParams(temperature=0).greedy


def test_updated_validates_and_rejects_unknown_names() -> None:
    params = SamplingParams().updated(top_k=5)
    assert params.top_k == 5
    with pytest.raises(ValidationError, match="top_q"):
        params.updated(top_q=0.5)
    with pytest.raises(ValidationError, match="top_k"):
        params.updated(top_k=-5)


def test_updated_from_text_parses_numbers_and_appends_stops() -> None:
    params = SamplingParams().updated_from_text("temperature", "0.25")
    params = params.updated_from_text("seed", "42").updated_from_text("stop", "END")
    params = params.updated_from_text("stop", "\n\n")
    assert (params.temperature, params.seed, params.stop) == (0.25, 42, ("END", "\n\n"))
    assert params.updated_from_text("seed", "none").seed is None
    with pytest.raises(ValidationError, match=r"top_k.*integer"):
        params.updated_from_text("top_k", "many")
    with pytest.raises(ValidationError, match="unknown parameter"):
        params.updated_from_text("warmth", "1")


def test_from_mapping_accepts_api_shapes() -> None:
    assert SamplingParams.from_mapping({"stop": "x"}).stop == ("x",)
    assert SamplingParams.from_mapping({"stop": ["a", "b"], "top_k": 3}).stop == ("a", "b")
