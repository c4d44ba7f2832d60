"""Chat templates are untrusted: known injection payloads run no code, and templates that loop
forever or explode stop with a TemplateError, within the time and size limits.

The payloads are the shapes published for CVE-2024-34359 (llama-cpp-python rendered GGUF chat
templates unsandboxed) and the usual Jinja server-side template injection corpus.
"""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

import pytest

from hearth.engine.templates import (
    MAX_OUTPUT_CHARS,
    MAX_SOURCE_CHARS,
    RENDER_SECONDS,
    ChatMessage,
    ChatTemplate,
)
from hearth.errors import TemplateError

MESSAGES = [ChatMessage("system", "be brief"), ChatMessage("user", "hi")]

# Each tries to reach Python objects that lead to os / subprocess / builtins.
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[0] }}",
    "{{ [].__class__.__mro__[-1].__subclasses__() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.system('touch {canary}') }}",
    "{{ joiner.__init__.__globals__.os.popen('touch {canary}').read() }}",
    "{{ namespace.__init__.__globals__['os'].system('touch {canary}') }}",
    "{{ lipsum.__globals__['os'].popen('touch {canary}').read() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch {canary}') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "{{ config.items() }}",
    "{{ config.__class__.__init__.__globals__['os'] }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('id') }}",
    "{{ raise_exception.__globals__ }}",
    "{{ strftime_now.__globals__['time'] }}",
    "{{ messages|attr('__class__') }}",
    "{{ (messages|attr('__class__'))|attr('__mro__') }}",
    "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "{{ '{0.__init__.__globals__}'.format(raise_exception) }}",
    "{{ '%s' % messages.__class__ }}",
    "{{ messages.pop() }}",
    "{% set _ = messages.append({'role': 'x'}) %}",
    "{% set _ = messages[0].update({'role': 'x'}) %}",
    "{{ dict.__subclasses__() }}",
    "{{ range.__self__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ ''.__class__.__dict__ }}",
    "{{ getattr }}{{ __import__ }}{{ eval }}{{ exec }}{{ open }}",
    "{% import 'os' as os %}{{ os }}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
]

# Each would take a very long time or a lot of memory in an unbounded renderer.
EXPLOSIONS = [
    "{% set x = range(10**9) %}{{ x|length }}",
    "{{ range(10**9)|list|length }}",
    "{{ 'a' * 10**9 }}",
    "{{ ['a'] * 10**9 }}",
    "{{ ('a' * 1000000) * 1000 }}",
    "{{ 10**10**10 }}",
    "{{ 2**100000000 }}",
    "{% set ns = namespace(n=10) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
    "{% endfor %}{{ ns.n > 0 }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ '\t'.expandtabs(10**9) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ 'x'|indent(width=10**9) }}",
    "{{ [1]|batch(10**9, 0)|list }}",
    "{{ range(10)|slice(10**9)|list }}",
    "{{ messages|tojson(indent=10**9) }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%*s' % (10**9, 'x') }}",
    "{{ '%.999999999f' % 1.0 }}",
    "{{ '%999999999s'|format('x') }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ '{:>{w}}'.format('x', w=10**9) }}",
    "{{ '{0:{1}}'.format('x', 10**9) }}",
    "{{ ('x' * 1000000)|replace('x', 'yyyyyyyyyy') }}",
    "{{ ('x' * 1000000).replace('', 'yyyyyyyyyy') }}",
    "{{ ('x' * 3000000)|join('yy') }}",
    "{{ 'yy'.join('x' * 3000000) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
    "{% endfor %}{{ ns.l|length }}",
    "{% set big %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}"
    "{{ big|length }}",
    "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endmacro %}"
    "{{ m()|length }}",
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% for c in r %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% macro f() %}{{ caller() }}{% endmacro %}"
    "{% macro g() %}{% call f() %}{{ g() }}{% endcall %}{% endmacro %}{{ g() }}",
    "{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}",
    "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "{{ (range(100000)|list) * 100 }}",
    "{{ range(100000)|map('string')|join * 100 }}",
    "{{ 1 / 0 }}",
    "{{ 10.0 ** 10000 }}",
    "{{ messages[10**9] }}",
    "{{ strftime_now('%Y' * 10**9) }}",
]


def _render(source: str, canary: Path) -> str:
    return ChatTemplate(source.replace("{canary}", str(canary))).render(MESSAGES)


@pytest.mark.parametrize("source", ESCAPES)
def test_injection_payloads_run_no_code(source: str, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    try:
        text = _render(source, canary)
    except TemplateError as error:
        assert str(error).startswith("chat template")
    else:  # rendered harmlessly: nothing of Python's internals leaked into the text
        for leak in ("<class", "<module", "<built-in", "<function", "subprocess", "__"):
            assert leak not in text
    assert not canary.exists()


@pytest.mark.parametrize("source", EXPLOSIONS)
def test_explosive_templates_stop_within_the_limits(source: str, tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        text = _render(source, tmp_path / "unused")
    except TemplateError as error:
        assert str(error).startswith("chat template")
    else:
        assert len(text) <= MAX_OUTPUT_CHARS
    assert time.monotonic() - started < RENDER_SECONDS + 3
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 512 * 1024  # a peak over 512 MiB means something was built unbounded


def test_ordinary_templates_still_render() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    template = ChatTemplate(QWEN_STYLE, bos_token="<s>")
    text = template.render(MESSAGES, extra={"tools": tools})
    assert "<|im_start|>system\nbe brief" in text
    assert '"name": "get_weather"' in text
    assert text.endswith("<|im_start|>assistant\n")
    assert ChatTemplate("{{ '%05d'|format(42) }}{{ '{:>6}'.format('ab') }}").render([]) == (
        "00042    ab"
    )
    assert ChatTemplate("{{ 'ab' * 3 }}{{ [1, 2] + [3] }}{{ 2 ** 10 }}").render([]) == (
        "ababab[1, 2, 3]1024"
    )


def test_one_template_renders_for_several_threads_at_once() -> None:
    template = ChatTemplate("{% for i in range(2000) %}{{ i % 10 }}{% endfor %}")
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(template.render([]))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(len(r) == 2000 for r in results)


QWEN_STYLE = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- endif %}
{{- "\\n\\n# Tools\\n\\n<tools>" }}
{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
{{- "\\n</tools><|im_end|>\\n" }}
{%- endif %}
{%- set ns = namespace(first=true) %}
{%- for message in messages %}
{%- if not (message.role == 'system' and loop.first and tools) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content | trim + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns.first = false %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""


def test_an_oversized_template_source_is_refused() -> None:
    with pytest.raises(TemplateError, match="at most"):
        ChatTemplate("x" * (MAX_SOURCE_CHARS + 1))


def test_compiling_the_largest_template_with_constant_folding_is_bounded() -> None:
    # jinja evaluates constant filter chains while compiling (each of these builds 1 MB);
    # that folding runs under the render deadline, and the source size bounds the rest.
    chain = "('x'|center(1000000)|replace('x', 'y'))|length|string"
    source = "{{ " + " ~ ".join([chain] * (MAX_SOURCE_CHARS // (len(chain) + 3))) + " }}"
    assert len(source) <= MAX_SOURCE_CHARS
    started = time.monotonic()
    try:
        ChatTemplate(source).render([])
    except TemplateError as error:
        assert "longer than" in str(error)
    assert time.monotonic() - started < 2 * RENDER_SECONDS + 10
