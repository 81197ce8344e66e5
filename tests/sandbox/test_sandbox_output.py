"""Output capping keeps the head and the tail and says how much was cut."""

from __future__ import annotations

from sandbox.base import OutputCapture


def test_small_output_is_kept_whole():
    capture = OutputCapture(1024)
    for piece in (b"hello ", b"world\n"):
        capture.feed(piece)
    assert capture.text() == "hello world\n" and not capture.truncated


def test_large_output_keeps_head_and_tail_with_a_marker():
    capture = OutputCapture(1024)
    capture.feed(b"H" * 600)
    for _ in range(1000):
        capture.feed(b"m" * 1000)
    capture.feed(b"T" * 10 + b"\nthe end\n")
    text = capture.text()
    assert capture.truncated
    assert text.startswith("H" * 512)
    assert text.endswith("TTTTTTTTTT\nthe end\n")
    # 600 + 1,000,000 + 19 bytes in, 512 kept at each end
    assert "999,595 bytes of output cut (limit 1 KiB per stream)" in text
    assert len(capture.tail) <= 2 * 512  # memory stays bounded


def test_the_wrapper_trailer_is_removed_and_read():
    capture = OutputCapture(1024)
    capture.feed(b"some error\n")
    capture.feed(b"\nMARK 137 1\n")
    assert capture.pop_trailer(b"MARK") == (137, 1)
    assert capture.text() == "some error\n"
    assert capture.pop_trailer(b"MARK") is None
