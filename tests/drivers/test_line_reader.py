"""The bounded line reader that turns engine output into log lines."""

from __future__ import annotations

from collections.abc import Iterable

from swapd.drivers.logtail import MAX_LINE, TRUNCATED, LineReader


def read(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> list[str]:
    reader = LineReader(max_line)
    lines: list[str] = []
    for chunk in chunks:
        lines.extend(reader.feed(chunk))
    return lines + reader.close()


def test_lines_end_at_newline_and_the_unterminated_last_line_is_kept() -> None:
    assert read([b"one\ntwo\n\nthr", b"ee"]) == ["one", "two", "", "three"]


def test_a_carriage_return_progress_bar_gives_one_line_per_redraw() -> None:
    bar = b"".join(b"\rdownloading %d%%" % pct for pct in range(0, 101, 25))
    reader = LineReader()
    lines = reader.feed(bar + b"\r")  # tqdm never prints a newline until it is done
    assert lines == [f"downloading {pct}%" for pct in range(0, 101, 25)]


def test_crlf_ends_one_line_even_when_split_across_chunks() -> None:
    assert read([b"a\r\nb\r", b"\nc\r\n"]) == ["a", "b", "c"]


def test_a_huge_line_is_capped_and_marked_truncated_and_the_next_line_is_whole() -> None:
    huge = [b"x" * 10_000] * 100  # 1 MB without a newline, in 10 kB chunks
    lines = read([*huge, b"tail\nnext\n"], max_line=64 * 1024)
    assert lines == ["x" * 64 * 1024 + TRUNCATED, "next"]


def test_a_multibyte_character_split_across_chunks_decodes_whole() -> None:
    text = "ñandú 🦙 ok\n".encode()
    for cut in range(1, len(text)):
        assert read([text[:cut], text[cut:]]) == ["ñandú 🦙 ok"], cut


def test_truncation_never_splits_a_character() -> None:
    line = "é" * 10  # 2 bytes each; a 5-byte cap falls inside the third
    assert read([line.encode() + b"\n"], max_line=5) == ["éé" + TRUNCATED]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert read([b"bad \xff byte\n"]) == ["bad \ufffd byte"]


def test_a_line_without_end_holds_at_most_the_cap_in_memory() -> None:
    # The old splitter kept (and re-split, per chunk) everything since the last newline.
    reader = LineReader(max_line=1000)
    for _ in range(1000):
        assert reader.feed(b"y" * 4096) == []
        assert reader.pending <= 1000
    assert reader.close() == ["y" * 1000 + TRUNCATED]
    assert reader.pending == 0
