import time

import pytest

from hearth.engine.templates import ChatMessage, ChatTemplate
from hearth.errors import TemplateError

SIMPLE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_renders_messages_with_special_tokens() -> None:
    template = ChatTemplate(SIMPLE, bos_token="<s>")
    text = template.render([ChatMessage("system", "be brief"), ChatMessage("user", "hi")])
    assert text == "<s><|system|>be brief\n<|user|>hi\n<|assistant|>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% set x = messages.append(1) %}",
        "{{ cycler.__init__.__globals__.os.system('true') }}",
    ],
)
def test_sandbox_refuses_escapes_and_mutation(source: str) -> None:
    with pytest.raises(TemplateError):
        ChatTemplate(source).render([ChatMessage("user", "x")])


def test_runaway_template_is_stopped_by_the_time_limit() -> None:
    source = (
        "{% for a in range(100000) %}{% for b in range(100000) %}"
        "{% if a == -1 %}x{% endif %}{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"longer than|loop iterations"):
        ChatTemplate(source).render([])
    assert time.monotonic() - started < 10


def test_huge_output_is_refused() -> None:
    source = "{% for a in range(100000) %}{{ 'x' * 100 }}{% endfor %}"
    with pytest.raises(TemplateError, match="exceeds"):
        ChatTemplate(source).render([])


def test_raise_exception_becomes_a_template_error() -> None:
    source = (
        "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="first must be user"):
        ChatTemplate(source).render([ChatMessage("assistant", "x")])


def test_syntax_error_is_reported_with_its_line() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        ChatTemplate("ok\n{% for %}")
