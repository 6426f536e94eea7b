"""engine.video_io on tiny synthetic clips (32x48 px, at most 24 frames)."""

import os
import struct
import subprocess
import zlib

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from engine import video_io
from engine.video_io import (
    MAX_SIDE,
    MediaError,
    fit,
    from_tensor,
    probe,
    read_image,
    read_video,
    resample_fps,
    to_tensor,
    write_image,
    write_video,
)

H, W = 32, 48
BG, SQUARE = (40, 90, 160), (230, 200, 30)


def square_clip(n=12):  # (n, H, W, 3): an 8x8 square moving 2 px right per frame
    frames = np.empty((n, H, W, 3), np.uint8)
    frames[:] = BG
    for k in range(n):
        frames[k, 12:20, 2 * k : 2 * k + 8] = SQUARE  # even offsets: no chroma-subsampling blur
    return frames


def counter_clip(n=24):  # (n, H, W, 3): frame k is grey level 8 + 10 k
    return np.repeat((8 + 10 * np.arange(n, dtype=np.uint8))[:, None, None, None], H * W * 3).reshape(n, H, W, 3)


def frame_numbers(frames):  # (N, H, W, 3) counter frames -> (N,) their k
    return np.round((frames.reshape(len(frames), -1).mean(1) - 8) / 10).astype(int)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse) if mse else float("inf")


def png_header_only(path, width, height):
    """A PNG that declares width x height but holds no pixels: a bomb's header, made in microseconds."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- round trips


def test_mp4_round_trip_keeps_size_count_rate_and_quality(tmp_path):
    clip = square_clip(12)
    out = write_video(tmp_path / "clip.mp4", clip, fps=24)
    info = probe(out)
    assert (info.kind, info.width, info.height, info.n_frames) == ("video", W, H, 12)
    assert info.fps == pytest.approx(24) and info.duration_s == pytest.approx(0.5)
    back = read_video(out)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert psnr(back, clip) >= 35
    gen = imageio_ffmpeg.read_frames(str(out))
    meta = next(gen)
    gen.close()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")  # what browsers play


def test_mp4_keeps_an_audio_track_fitted_to_the_clip_and_the_same_frames(tmp_path):
    """An audio track (a model's, e.g. LTX-2's) is muxed as AAC, cut to the clip's 2 s; the video stream is
    the one written without audio, bit for bit, still BT.709; no temp file is left."""
    frames = square_clip(24)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)                # 3 s, longer than the clip
    with_audio = write_video(tmp_path / "a.mp4", frames, 12, audio=(tone, 16000))
    plain = write_video(tmp_path / "b.mp4", frames, 12)
    gen = imageio_ffmpeg.read_frames(str(with_audio))
    meta = next(gen)
    gen.close()
    assert meta["audio_codec"] == "aac" and meta["duration"] == pytest.approx(2.0, abs=0.05)
    assert "bt709" in meta["pix_fmt"]
    assert np.array_equal(read_video(with_audio), read_video(plain))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
    assert "audio_codec" not in next(imageio_ffmpeg.read_frames(str(plain)))


@pytest.mark.parametrize("audio, out, words", [
    ((np.zeros(100), 16000), "a.gif", "only .mp4 keeps an audio track"),
    ((np.zeros((100, 3)), 16000), "a.mp4", "audio must be finite samples"),
    ((np.full(100, np.nan), 16000), "a.mp4", "audio must be finite samples"),
    ((np.zeros(100), 44100.5), "a.mp4", "sample rate must be a whole number of Hz"),
])
def test_bad_audio_is_refused_in_one_line(tmp_path, audio, out, words):
    with pytest.raises(MediaError, match=words) as e:
        write_video(tmp_path / out, square_clip(4), 12, audio=audio)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())


def test_mp4_keeps_colours_of_saturated_frames(tmp_path):
    """BT.709 is both the conversion matrix and the tag, so pure colours come back pure."""
    clip = np.zeros((4, H, W, 3), np.uint8)
    clip[:, :, :16], clip[:, :, 16:32, 1], clip[:, :, 32:, 2] = (255, 0, 0), 255, 255
    back = read_video(write_video(tmp_path / "rgb.mp4", clip, fps=8))
    for x, colour in ((8, (255, 0, 0)), (24, (0, 255, 0)), (40, (0, 0, 255))):
        assert np.abs(back[:, 16, x].astype(int) - colour).max() <= 4


def test_png_sequence_folder_round_trips_exactly_with_its_rate(tmp_path):
    clip = square_clip(6)
    folder = write_video(str(tmp_path / "seq") + "/", clip, fps=24)
    assert sorted(os.listdir(folder)) == [f"frame_{k:05d}.png" for k in range(6)]
    assert probe(folder).fps == 24 and probe(folder).n_frames == 6
    np.testing.assert_array_equal(read_video(folder), clip)
    np.testing.assert_array_equal(read_image(folder / "frame_00003.png"), clip[3])


def test_png_pattern_writes_beside_other_files_and_reads_back(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    clip = square_clip(4)
    write_video(tmp_path / "shot_%03d.png", clip, fps=12)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"] + [f"shot_{k:03d}.png" for k in range(4)]
    np.testing.assert_array_equal(read_video(tmp_path / "shot_%03d.png"), clip)


def test_gif_round_trip_keeps_frames_and_loops(tmp_path):
    clip = square_clip(6)[[0, 1, 2, 2, 3, 4, 5, 5, 5]]  # held frames, which PIL merges into longer delays
    out = write_video(tmp_path / "loop.gif", clip, fps=24)
    with Image.open(out) as im:
        assert im.info["loop"] == 0 and im.n_frames == 6
    info = probe(out)
    assert (info.kind, info.n_frames, info.fps) == ("video", 9, 25)  # delays are 1/100 s: 4 ticks = 25 fps
    np.testing.assert_array_equal(read_video(out), clip)  # 2 colours: the palette is exact


def test_animated_webp_reads_on_its_shortest_delay(tmp_path):
    frames = [Image.fromarray(f) for f in counter_clip(3)]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], duration=[50, 100, 50], lossless=True)
    info = probe(tmp_path / "a.webp")
    assert (info.kind, info.fps, info.n_frames) == ("video", 20, 4)
    assert read_video(tmp_path / "a.webp")[:, 0, 0, 0].tolist() == [8, 18, 18, 28]


def test_image_round_trips_and_conversions(tmp_path):
    img = square_clip(1)[0]
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "a.png", img)), img)
    assert psnr(read_image(write_image(tmp_path / "a.jpg", img)), img) >= 30
    assert read_video(tmp_path / "a.png").shape == (1, H, W, 3)
    info = probe(tmp_path / "a.png")
    assert (info.kind, info.fps, info.n_frames, info.duration_s) == ("image", None, 1, 0.0)

    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[:, :24] = (200, 100, 50, 255)  # opaque left half; the right half is transparent white
    rgba[:, 24:] = (255, 255, 255, 0)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    got = read_image(tmp_path / "rgba.png")
    assert got.shape == (H, W, 3) and tuple(got[0, 0]) == (200, 100, 50) and tuple(got[0, -1]) == (0, 0, 0)

    Image.fromarray(np.full((H, W), 77, np.uint8)).save(tmp_path / "grey.png")
    assert (read_image(tmp_path / "grey.png") == 77).all()
    Image.fromarray(np.full((H, W), 40000, np.uint16)).save(tmp_path / "grey16.png")
    assert (read_image(tmp_path / "grey16.png") == 40000 >> 8).all()
    Image.fromarray(img).quantize(4).save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_image(tmp_path / "pal.png"), img)


def test_video_path_as_image_gives_first_frame(tmp_path):
    out = write_video(tmp_path / "c.mp4", counter_clip(8), fps=8)
    assert frame_numbers(read_image(out)[None]).tolist() == [0]


# ----------------------------------------------------------------------------- resample_fps


def numbered(n):  # (n, 2, 2, 3): frame k filled with k
    return np.repeat(np.arange(n, dtype=np.uint8), 12).reshape(n, 2, 2, 3)


@pytest.mark.parametrize(
    "n, src, dst, expected",
    [
        (24, 24, 12, list(range(0, 24, 2))),  # every other frame
        (6, 12, 24, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),  # each frame twice
        (10, 30, 24, [0, 1, 2, 3, 5, 6, 7, 8]),  # floor(k * 1.25)
        (5, 24, 12, [0, 2, 4]),  # 2.5 frames round up to 3
        (7, 24, 24, list(range(7))),
        (1, 24, 8, [0]),  # never empty
    ],
)
def test_resample_fps_picks_the_frame_on_screen(n, src, dst, expected):
    out = resample_fps(numbered(n), src, dst)
    assert out[:, 0, 0, 0].tolist() == expected
    assert out.shape[1:] == (2, 2, 3)


def test_resample_fps_30_to_24_over_a_second():
    out = resample_fps(numbered(30), 30, 24)[:, 0, 0, 0]
    assert len(out) == 24 and out.tolist() == [int(k * 30 / 24) for k in range(24)]
    assert 4 not in out.tolist() and 9 not in out.tolist()  # every 5th frame is dropped


def test_resample_fps_refuses_bad_rates():
    with pytest.raises(MediaError, match="dst_fps"):
        resample_fps(numbered(4), 24, 0)


# ----------------------------------------------------------------------------- fit


TL, TR, BL, BR, MARK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)


def quadrants():  # (H, W, 3): four coloured quadrants, a magenta 16x16 block in the centre
    img = np.empty((H, W, 3), np.uint8)
    img[: H // 2, : W // 2], img[: H // 2, W // 2 :] = TL, TR
    img[H // 2 :, : W // 2], img[H // 2 :, W // 2 :] = BL, BR
    img[H // 2 - 8 : H // 2 + 8, W // 2 - 8 : W // 2 + 8] = MARK
    return img


def close(pixel, colour, tol=8):
    return np.abs(pixel.astype(int) - colour).max() <= tol


TARGETS = {"16:9": (64, 36), "1:1": (32, 32), "9:16": (36, 64)}  # a 3:2 source matches none


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_fit_gives_the_exact_shape(target, mode):
    w, h = TARGETS[target]
    clip = np.stack([quadrants()] * 2)
    assert fit(clip, w, h, mode).shape == (2, h, w, 3)
    assert fit(quadrants(), w, h, mode).shape == (h, w, 3)


@pytest.mark.parametrize("target", TARGETS)
def test_fit_crop_keeps_the_centre_and_fills_the_frame(target):
    w, h = TARGETS[target]
    out = fit(quadrants(), w, h, "crop")
    assert close(out[h // 2, w // 2], MARK)
    assert close(out[0, 0], TL) and close(out[-1, -1], BR)  # no bars


@pytest.mark.parametrize("target, bars", [("16:9", "left/right"), ("1:1", "top/bottom"), ("9:16", "top/bottom")])
def test_fit_pad_puts_black_bars_on_the_right_sides(target, bars):
    w, h = TARGETS[target]
    out = fit(quadrants(), w, h, "pad").astype(int)
    scale = min(w / W, h / H)
    bar = (w - round(W * scale)) // 2 if bars == "left/right" else (h - round(H * scale)) // 2
    assert bar >= 2
    if bars == "left/right":
        assert out[:, :bar].max() == 0 and out[:, w - bar :].max() == 0
        assert close(out[0, w // 4], TL) and close(out[-1, 3 * w // 4], BR)  # content spans the full height
    else:
        assert out[:bar].max() == 0 and out[h - bar :].max() == 0
        assert close(out[h // 4 + bar // 2, 0], TL) and close(out[h - bar - 1, -1], BR)  # full width
    assert close(out[h // 2, w // 2], MARK)


@pytest.mark.parametrize("target", TARGETS)
def test_fit_stretch_keeps_corner_colours(target):
    w, h = TARGETS[target]
    out = fit(quadrants(), w, h, "stretch")
    for pixel, colour in ((out[0, 0], TL), (out[0, -1], TR), (out[-1, 0], BL), (out[-1, -1], BR)):
        assert close(pixel, colour)


def test_fit_same_size_is_exact_and_bad_mode_is_named():
    img = quadrants()
    np.testing.assert_array_equal(fit(img, W, H, "crop"), img)
    with pytest.raises(MediaError, match=r"^fit: mode 'zoom' is not one of crop, pad, stretch$"):
        fit(img, 32, 32, "zoom")


# ----------------------------------------------------------------------------- segments


@pytest.fixture(scope="module")
def counter_mp4(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("seg") / "counter.mp4", counter_clip(24), fps=24)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, list(range(24))),
        ({"start_s": 0.25, "end_s": 0.75}, list(range(6, 18))),
        ({"start_s": 0.25, "end_s": 0.75, "fps": 12}, list(range(6, 18, 2))),
        ({"start_s": 0.5, "fps": 48}, [k // 2 for k in range(24, 48)]),
        ({"end_s": 5.0, "fps": 8}, list(range(0, 24, 3))),  # end past the clip: up to its end
        ({"start_s": 0.27, "end_s": 0.3}, [6, 7]),  # frames on screen during the segment
    ],
)
def test_read_video_cuts_and_resamples(counter_mp4, kwargs, expected):
    frames = read_video(counter_mp4, **kwargs)
    assert frames.shape[1:] == (H, W, 3)
    assert frame_numbers(frames).tolist() == expected


@pytest.mark.parametrize("kwargs", [{"start_s": 1.0}, {"start_s": -0.1}, {"start_s": 0.5, "end_s": 0.5}, {"fps": 0}])
def test_read_video_refuses_bad_segments(counter_mp4, kwargs):
    with pytest.raises(MediaError, match=r"^clip: "):
        read_video(counter_mp4, field="clip", **kwargs)


# ----------------------------------------------------------------------------- errors


def make_missing(d):
    return d / "nope.mp4"


def make_random_mp4(d):
    (d / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    return d / "noise.mp4"


def make_text_mp4(d):
    (d / "notes.mp4").write_text("this is not a video\n" * 20)
    return d / "notes.mp4"


def make_tiny_png(d):
    Image.new("RGB", (1, 1)).save(d / "dot.png")
    return d / "dot.png"


def make_truncated_png(d):
    Image.new("RGB", (W, H), BG).save(d / "cut.png")
    (d / "cut.png").write_bytes((d / "cut.png").read_bytes()[:60])
    return d / "cut.png"


def make_huge_png(d):
    return png_header_only(d / "huge.png", 20000, 20000)  # PIL raises DecompressionBombError


def make_big_png(d):
    return png_header_only(d / "big.png", 10000, 10000)  # PIL only warns (100 Mpx)


def make_wide_png(d):
    return png_header_only(d / "wide.png", MAX_SIDE + 1, 16)


def make_zero_frame_avi(d):
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=size=48x32:rate=24",
           "-frames:v", "0", "-c:v", "rawvideo", str(d / "empty.avi")]
    subprocess.run(cmd, check=True, capture_output=True)
    return d / "empty.avi"


@pytest.mark.parametrize(
    "make, says",
    [
        (make_missing, "does not exist"),
        (make_random_mp4, "is not a readable video or image"),
        (make_text_mp4, "is not a readable video or image"),
        (make_truncated_png, "is not a readable video or image"),
        (make_tiny_png, "is 1x1 px; each side must be 16 to 8192 px"),
        (make_huge_png, "too large"),
        (make_big_png, "8192"),
        (make_wide_png, "is 8193x16 px"),
        (make_zero_frame_avi, "has no video frames"),
    ],
)
def test_unusable_media_gives_one_line_naming_the_file(tmp_path, make, says, recwarn):
    path = make(tmp_path)
    for call in (probe, read_video, read_image):
        with pytest.raises(MediaError) as e:
            call(path, field="cards[2].path")
        msg = str(e.value)
        assert msg.startswith(f"cards[2].path: '{path}' ") and says in msg and "\n" not in msg
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_unsupported_output_extension(tmp_path):
    with pytest.raises(MediaError, match=r"'.*clip\.avi' has an unsupported extension"):
        write_video(tmp_path / "clip.avi", square_clip(2), fps=24)


# ----------------------------------------------------------------------------- atomic writes


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = write_video(tmp_path / "x.mp4", square_clip(4), fps=24)
    before = out.read_bytes()
    with pytest.raises(MediaError, match=r"^out: '.*x\.mp4' exists; pass --overwrite to replace it$"):
        write_video(out, square_clip(6), fps=24)
    assert out.read_bytes() == before
    write_video(out, square_clip(6), fps=24, overwrite=True)
    assert probe(out).n_frames == 6
    assert sorted(os.listdir(tmp_path)) == ["x.mp4"]


def test_png_folder_overwrite_replaces_old_frames(tmp_path):
    folder = tmp_path / "seq"
    write_video(folder, square_clip(6), fps=24)
    (folder / "readme.txt").write_text("not a frame")
    with pytest.raises(MediaError, match="already holds frames"):
        write_video(folder, square_clip(3), fps=24)
    write_video(folder, square_clip(3), fps=24, overwrite=True)
    assert sorted(os.listdir(folder)) == ["frame_00000.png", "frame_00001.png", "frame_00002.png", "readme.txt"]
    assert read_video(folder).shape[0] == 3


@pytest.mark.parametrize(
    "name, frames",
    [
        ("bad.mp4", square_clip(3).astype(np.float32)),
        ("bad.gif", square_clip(3)[..., :2]),
        ("bad.mp4", square_clip(3)[:, :, :47]),  # odd width: refused, never padded
        ("bad/", np.zeros((0, H, W, 3), np.uint8)),
        ("bad.gif", square_clip(1)[0]),  # an image is not a clip
    ],
)
def test_invalid_frames_are_refused_before_anything_is_written(tmp_path, name, frames):
    with pytest.raises(MediaError) as e:
        write_video(tmp_path / name if not name.endswith("/") else str(tmp_path / name), frames, fps=24)
    assert "bad" in str(e.value) and "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_failure_while_encoding_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_writer(path, *args, **kwargs):  # writes part of a file, then fails like a dying ffmpeg
        with open(path, "wb") as f:
            f.write(b"\x00" * 100)
            for k in range(10**6):
                yield
                if k == 2:
                    raise OSError("[Errno 32] Broken pipe\nFFMPEG COMMAND: ...")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", broken_writer)
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(MediaError, match=r"^out: could not write '.*x\.mp4': \[Errno 32\] Broken pipe$"):
        write_video(tmp_path / "x.mp4", square_clip(6), fps=24)
    assert os.listdir(tmp_path) == ["other.txt"]


def test_failure_while_writing_png_frames_leaves_no_folder(tmp_path, monkeypatch):
    calls = []
    real = video_io.Image.fromarray

    def flaky(array, *a):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        return real(array, *a)

    monkeypatch.setattr(video_io.Image, "fromarray", flaky)
    with pytest.raises(MediaError, match="No space left on device"):
        write_video(tmp_path / "seq", square_clip(5), fps=24)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- tensors


def test_tensor_round_trip_is_exact_for_every_value():
    frames = (np.arange(4 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(4, 8, 8, 3)
    x = to_tensor(frames)
    assert tuple(x.shape) == (3, 4, 8, 8) and str(x.dtype) == "torch.float32"
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert x[1, 2, 3, 4].item() == pytest.approx(frames[2, 3, 4, 1] / 127.5 - 1)
    np.testing.assert_array_equal(from_tensor(x), frames)


def test_from_tensor_rounds_and_clamps():
    import torch

    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0, 1 / 127.5 - 1 + 0.003]).reshape(1, 1, 1, 6).expand(3, 1, 1, 6)
    assert from_tensor(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 1]


def test_ffmpeg_slow_to_describe_a_file_is_waited_for_and_garbage_still_refused(tmp_path, monkeypatch):
    """imageio-ffmpeg gives ffmpeg 10 s to print a file's header; in a fresh-clone CI run on a busy machine a
    healthy test clip failed that way ("could not be decoded (Could not load meta information)"). The reader
    starts again on that failure only: the clip reads as it is, and a file that is not a video is still refused."""
    clip = write_video(tmp_path / "c.mp4", square_clip(6), 12.0)
    want, real, calls = read_video(clip), imageio_ffmpeg.read_frames, []

    def missed_header():    # a generator, as imageio-ffmpeg's: it raises when asked for the header
        raise OSError("Could not load meta information\n=== stderr ===\n")
        yield

    def slow_then_real(*a, **k):
        calls.append(a)
        return missed_header() if len(calls) % 2 else real(*a, **k)   # every reader's first try misses the 10 s
    monkeypatch.setattr(video_io.imageio_ffmpeg, "read_frames", slow_then_real)
    assert np.array_equal(read_video(clip), want) and len(calls) == 4   # open and read, each started twice
    monkeypatch.setattr(video_io.imageio_ffmpeg, "read_frames", real)
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="is not a readable video or image"):
        read_video(tmp_path / "junk.mp4")
