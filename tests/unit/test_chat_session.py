from hearth.cli.chat_session import ChatSession, Command, MultilineReader, parse_line
from hearth.engine.templates import ChatMessage


def test_chat_model_keeps_message_history() -> None:
    session = ChatSession(uses_template=True)
    assert session.user_turn("hi") == [ChatMessage("user", "hi")]
    session.model_turn("hello")
    assert session.user_turn("again")[-2:] == [
        ChatMessage("assistant", "hello"),
        ChatMessage("user", "again"),
    ]
    session.clear()
    assert session.messages == []


def test_base_model_keeps_a_transcript_and_forgets_unanswered_turns() -> None:
    session = ChatSession(uses_template=False)
    assert session.user_turn("Once upon") == "Once upon"
    session.model_turn(" a time")
    assert session.user_turn(", there") == "Once upon a time, there"
    session.forget_last_user_turn(len(", there"))
    assert session.transcript == "Once upon a time"


def test_parse_line_distinguishes_commands() -> None:
    assert parse_line("/set parameter temperature 0.5") == Command(
        "/set", ("parameter", "temperature", "0.5")
    )
    assert parse_line("/BYE") == Command("/bye", ())
    assert parse_line("what is 1/2?") == "what is 1/2?"
    assert parse_line("//not a command") == "//not a command"


def test_multiline_reader_joins_lines_between_fences() -> None:
    reader = MultilineReader()
    assert reader.feed("single") == "single"
    assert reader.feed('"""first') is None
    assert reader.collecting
    assert reader.feed("second") is None
    assert reader.feed('third"""') == "first\nsecond\nthird"
    assert not reader.collecting
    assert reader.feed('"""one line"""') == "one line"
    assert reader.feed('"""') is None
    assert reader.feed('"""') == ""
