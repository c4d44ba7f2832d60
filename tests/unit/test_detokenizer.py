from hearth.engine.detokenizer import StreamingDetokenizer


def feed_all(detok: StreamingDetokenizer, pieces: list[bytes]) -> tuple[list[str], bool]:
    texts = []
    stopped = False
    for piece in pieces:
        delta = detok.feed(piece)
        texts.append(delta.text)
        stopped = stopped or delta.stopped
    if not stopped:
        texts.append(detok.flush())
    return texts, stopped


def test_multibyte_character_split_across_tokens_is_held_back() -> None:
    euro = "€".encode()  # 3 bytes
    detok = StreamingDetokenizer()
    assert detok.feed(b"price " + euro[:1]).text == "price "
    assert detok.feed(euro[1:2]).text == ""
    assert detok.feed(euro[2:] + b"5").text == "€5"


def test_emoji_byte_by_byte() -> None:
    emoji = "🔥 ok".encode()
    texts, _ = feed_all(StreamingDetokenizer(), [bytes([b]) for b in emoji])
    assert "".join(texts) == "🔥 ok"
    assert all("\ufffd" not in t for t in texts)


def test_incomplete_character_at_the_end_becomes_replacement_char() -> None:
    texts, _ = feed_all(StreamingDetokenizer(), [b"a", "é".encode()[:1]])
    assert "".join(texts) == "a\ufffd"


def test_stop_string_spanning_tokens_is_cut() -> None:
    texts, stopped = feed_all(StreamingDetokenizer(("STOP",)), [b"hello S", b"TO", b"P world"])
    assert stopped
    assert "".join(texts) == "hello "
    assert texts[0] == "hello "  # "S" is held back: it may begin the stop string


def test_text_that_only_looks_like_a_stop_prefix_is_released() -> None:
    texts, stopped = feed_all(StreamingDetokenizer(("STOP",)), [b"ST", b"ART", b" done"])
    assert not stopped
    assert "".join(texts) == "START done"


def test_earliest_of_several_stop_strings_wins() -> None:
    texts, stopped = feed_all(StreamingDetokenizer(("world", "lo w")), [b"hello world"])
    assert stopped
    assert "".join(texts) == "hel"


def test_partial_stop_at_the_end_is_flushed() -> None:
    texts, stopped = feed_all(StreamingDetokenizer(("</end>",)), [b"answer </e"])
    assert not stopped
    assert "".join(texts) == "answer </e"


def test_multibyte_stop_string() -> None:
    stop = "。"
    pieces = [b"\xe4\xbd\xa0\xe5\xa5\xbd", stop.encode()[:2], stop.encode()[2:], b"more"]
    texts, stopped = feed_all(StreamingDetokenizer((stop,)), pieces)
    assert stopped
    assert "".join(texts) == "你好"


def test_feeding_after_stop_yields_nothing() -> None:
    detok = StreamingDetokenizer(("x",))
    assert detok.feed(b"ax").stopped
    assert detok.feed(b"bbb").text == ""
    assert detok.flush() == ""
