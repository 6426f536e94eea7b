"""Media I/O: the only place the engine reads or writes image and video files.

Conventions
- Frames are numpy uint8 RGB arrays: a clip is ``(N, H, W, 3)``, one image is ``(H, W, 3)``.
  RGBA, greyscale and palette files become RGB; transparent pixels become black.
- Sides lie in [MIN_SIDE, MAX_SIDE] px and a clip holds at most MAX_FRAMES frames;
  anything else is refused with MediaError (before its pixels are decoded).
- Time: frame k of a clip at ``fps`` is on screen during [k/fps, (k+1)/fps); every clip is
  treated as constant-frame-rate at the rate its container reports.
- Errors a user can cause are MediaError, one line that names the field and the file and
  says what is allowed: "cards[2].path: 'x.mp4' is not a readable video or image".
- Writers are atomic: the output appears complete under its final name or not at all, and an
  existing output is kept unless ``overwrite=True``.
- Formats. Read: any still or animated image PIL opens (GIF/WebP/APNG are clips), any video
  ffmpeg decodes, a folder of PNG frames. Write: ``.mp4`` (H.264, yuv420p, BT.709, even
  sides only), ``.gif`` (looping, delays in 1/100 s), PNG frames (a folder, or a
  ``name_%05d.png`` pattern); stills as png/jpg/webp.
- Tensors: ``to_tensor`` gives ``(3, N, H, W)`` float32 in [-1, 1] (the ``C F H W`` of a
  latent's pixel-space twin, without the batch axis); ``from_tensor`` inverts it exactly.
- Why imageio-ffmpeg and not moviepy (issue 22). Plain reading and writing already go through
  imageio-ffmpeg's ``read_frames`` / ``write_frames`` (the ffmpeg binary moviepy itself runs);
  only the frame count is a direct ffmpeg call. What remains here is the project's own rules:
  the checks before decoding, PIL's stills / animations / sequences, atomic writes and the
  BT.709 conversion, none of which moviepy does. moviepy would add nothing a clip needs and
  pins Pillow < 12 and imports python-dotenv (reading a ``.env`` at import), so it is not a
  dependency; muxing an audio track, when a backend makes one, is one more ffmpeg call here.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from engine.params import InputError

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_FRAMES = 60 * 60 * 60  # one hour at 60 fps
FIT_MODES = ("crop", "pad", "stretch")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SEQUENCE_PATTERN = "frame_%05d.png"  # file names of a PNG-sequence folder we write

# crf 14 is visually lossless for generated footage; BT.709 tags make browsers decode the
# colours we encoded (setparams makes ffmpeg convert RGB with that matrix, not just label it).
_H264_ARGS = (
    "-crf", "14", "-preset", "medium", "-movflags", "+faststart",
    "-vf", "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
)


class MediaError(InputError):
    """A media file given (or asked for) is unusable; str() is one line naming it."""

    def __init__(self, message: str):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", message).strip())


@dataclass(frozen=True)
class MediaInfo:
    path: str
    kind: str  # "image" | "video"
    width: int
    height: int
    fps: float | None  # None for images (and PNG folders written without a rate)
    n_frames: int  # 1 for images
    duration_s: float  # 0.0 for images; n_frames / fps for clips


@dataclass(frozen=True)
class _Media:
    info: MediaInfo
    read: Callable[[int, int], np.ndarray]  # (first, stop) -> (stop - first, H, W, 3)


def _err(field: str, path, what: str) -> MediaError:
    return MediaError(f"{field}: '{path}' {what}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ----------------------------------------------------------------------------- probing


def probe(path, field: str = "path") -> MediaInfo:
    """What `path` holds, from headers only; MediaError if it is missing, unreadable or out of limits."""
    return _open(path, field).info


def _open(path, field: str) -> _Media:
    p = Path(path)
    if p.is_dir() or (p.suffix.lower() == ".png" and "%" in p.name):
        return _open_sequence(p, field)
    if not p.is_file():
        raise _err(field, path, "does not exist")
    media = _open_pil(p, field)
    return media if media is not None else _open_ffmpeg(p, field)


def _check_sides(field: str, path, w: int, h: int) -> None:
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise _err(field, path, f"is {w}x{h} px; each side must be {MIN_SIDE} to {MAX_SIDE} px")


def _check_count(field: str, path, n: int) -> None:
    if n < 1:
        raise _err(field, path, "has no video frames")
    if n > MAX_FRAMES:
        raise _err(field, path, f"has {n} frames; at most {MAX_FRAMES} are allowed")


def _open_pil(p: Path, field: str) -> _Media | None:
    """A still or animated image PIL recognises, or None to let ffmpeg try the file."""
    with warnings.catch_warnings():
        # PIL warns above 89 Mpx and raises above 179 Mpx; either implies a side > 9447 > MAX_SIDE.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)  # lazy: reads the header, not the pixels
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _err(field, p, f"is too large; each side must be {MIN_SIDE} to {MAX_SIDE} px") from None
        except (UnidentifiedImageError, OSError):
            return None
    with im:
        if im.format == "MPEG":  # PIL identifies MPEG-1 headers but cannot decode them
            return None
        w, h = im.size
        _check_sides(field, p, w, h)
        if _orientation(im) in (5, 6, 7, 8):  # EXIF orientations that swap the sides
            w, h = h, w
        if getattr(im, "n_frames", 1) == 1:
            _verify(im, p, field)
            return _Media(MediaInfo(str(p), "image", w, h, None, 1, 0.0), partial(_read_still, p, field))
        fps, repeats = _animation_timeline(im)
    n = sum(repeats)
    _check_count(field, p, n)
    info = MediaInfo(str(p), "video", w, h, fps, n, n / fps)
    return _Media(info, partial(_read_animation, p, repeats, field))


def _verify(im: Image.Image, p: Path, field: str) -> None:
    """Catch truncated or corrupt stills now (PNG: chunk CRCs and lengths) without decoding pixels."""
    try:
        im.verify()
    except Exception as e:  # PIL raises SyntaxError, OSError or struct.error here
        raise _err(field, p, f"is not a readable video or image ({_first_line(e)})") from None


def _orientation(im: Image.Image) -> int:
    """EXIF orientation from the header only: PIL's getexif() decodes a PNG to look for a trailing chunk."""
    if "exif" not in im.info:
        return 1
    exif = Image.Exif()
    exif.load(im.info["exif"])
    return exif.get(0x0112, 1)


def _animation_timeline(im: Image.Image) -> tuple[float, list[int]]:
    """A constant rate for an animated image: its shortest delay, longer frames repeated.

    PIL merges identical consecutive GIF frames into one longer frame, so this also restores
    the frames of clips we wrote, unless every frame was held (then it reads at a slower
    rate with fewer frames: the same playback).
    """
    delays = []
    for frame in ImageSequence.Iterator(im):
        if im.format == "WEBP":
            frame.load()  # WebP sets a frame's duration only when it decodes the frame
        delays.append(frame.info.get("duration") or 100)  # browsers show delay 0 as 100 ms
    base = min(delays)
    return 1000.0 / base, [max(1, round(d / base)) for d in delays]


# imageio-ffmpeg gives ffmpeg 10 s (wall clock) to describe a file, then raises "Could not load meta
# information"; on a busy machine a healthy file can take longer, so that one failure is tried again.
HEADER_TRIES = 3


def _start_reading(src: str):
    """-> (meta dict, the generator of frame bytes after it): imageio-ffmpeg's reader, started again when ffmpeg
    was only slow to describe the file. The caller closes the generator."""
    for attempt in range(HEADER_TRIES):
        gen = imageio_ffmpeg.read_frames(src)
        try:
            return next(gen), gen
        except Exception as e:
            gen.close()
            if attempt + 1 == HEADER_TRIES or "Could not load meta information" not in str(e):
                raise


def _open_ffmpeg(p: Path, field: str) -> _Media:
    src = os.fspath(p.absolute())  # absolute: a name like "-x.mp4" must not read as an option
    try:
        meta, gen = _start_reading(src)
    except Exception:  # imageio-ffmpeg's header parser raises assorted types on garbage
        raise _err(field, p, "is not a readable video or image") from None
    gen.close()
    w, h = meta["size"]  # after ffmpeg's auto-rotation, i.e. what we will decode
    _check_sides(field, p, w, h)
    n = _count_frames(src)
    _check_count(field, p, n)
    fps = float(meta["fps"]) or (n / meta["duration"] if meta["duration"] else 0.0)
    if not fps > 0:
        raise _err(field, p, "has no frame rate")
    info = MediaInfo(str(p), "video", w, h, fps, n, n / fps)
    return _Media(info, partial(_read_ffmpeg, src, p, field))


def _count_frames(src: str) -> int:
    """Frames of the first video stream, counted by stream copy (no decoding: fast on long clips)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", src,
           "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, errors="replace").stderr
    counts = re.findall(r"frame=\s*(\d+)", out)
    return int(counts[-1]) if counts else 0


def _open_sequence(p: Path, field: str) -> _Media:
    files = _sequence_files(p)
    if not files:
        raise _err(field, p, "holds no PNG frames" if p.is_dir() else "matches no PNG frames")
    first = _open_pil(files[0], field)
    if first is None or first.info.kind != "image":
        raise _err(field, files[0], "is not a readable PNG frame")
    _check_count(field, p, len(files))
    with Image.open(files[0]) as im:
        fps = float(im.info["fps"]) if "fps" in im.info else None  # tEXt written by write_video
    n, w, h = len(files), first.info.width, first.info.height
    info = MediaInfo(str(p), "video", w, h, fps, n, n / fps if fps else 0.0)
    return _Media(info, partial(_read_sequence, files, (h, w), field))


def _sequence_files(p: Path) -> list[Path]:
    """PNG frames of a folder (natural order) or of a printf pattern such as out/f_%05d.png."""
    if p.is_dir():
        files = [f for f in p.iterdir() if f.suffix.lower() == ".png" and not f.name.startswith(".")]
        key = lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f.name)]  # noqa: E731
        return sorted(files, key=key)
    regex = _pattern_regex(p.name)
    if regex is None or not p.parent.is_dir():
        return []
    found = [(int(m.group(1)), f) for f in p.parent.iterdir() if (m := regex.match(f.name))]
    return [f for _, f in sorted(found)]


def _pattern_regex(pattern: str) -> re.Pattern | None:
    """frame_%05d.png -> ^frame_(\\d+)\\.png$; None unless it has exactly one %d field."""
    m = re.fullmatch(r"([^%]*)%0?\d*d([^%]*)", pattern)
    return re.compile(f"^{re.escape(m.group(1))}(\\d+){re.escape(m.group(2))}$") if m else None


# ----------------------------------------------------------------------------- reading


def _to_rgb(im: Image.Image) -> np.ndarray:  # (H, W, 3)
    if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grey: PIL's convert would clip to white
        grey = (np.asarray(im).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def _read_still(p: Path, field: str, first: int = 0, stop: int = 1) -> np.ndarray:  # (1, H, W, 3)
    try:
        with Image.open(p) as im:
            return _to_rgb(ImageOps.exif_transpose(im) if _orientation(im) != 1 else im)[None]
    except OSError as e:
        raise _err(field, p, f"could not be decoded ({_first_line(e)})") from None


def _read_animation(p: Path, repeats: list[int], field: str,
                    first: int, stop: int) -> np.ndarray:  # (stop-first, H, W, 3)
    frames, k = [], 0
    try:
        with Image.open(p) as im:
            for frame, r in zip(ImageSequence.Iterator(im), repeats):
                if k >= stop:
                    break
                if k + r > first:
                    rgb = _to_rgb(frame)
                    frames += [rgb] * (min(k + r, stop) - max(k, first))
                k += r
    except OSError as e:
        raise _err(field, p, f"could not be decoded ({_first_line(e)})") from None
    return np.stack(frames)


def _read_sequence(files: list[Path], hw: tuple[int, int], field: str,
                   first: int, stop: int) -> np.ndarray:  # (stop-first, H, W, 3)
    frames = []
    for f in files[first:stop]:
        try:
            with Image.open(f) as im:
                rgb = _to_rgb(im)
        except OSError as e:
            raise _err(field, f, f"could not be decoded ({_first_line(e)})") from None
        if rgb.shape[:2] != hw:
            raise _err(field, f, f"is {rgb.shape[1]}x{rgb.shape[0]} px; the first frame is {hw[1]}x{hw[0]}")
        frames.append(rgb)
    return np.stack(frames)


def _read_ffmpeg(src: str, p: Path, field: str, first: int, stop: int) -> np.ndarray:  # (stop-first, H, W, 3)
    frames, gen = [], None
    try:
        meta, gen = _start_reading(src)
        w, h = meta["size"]
        for k, buf in enumerate(gen):
            if k >= stop:
                break  # closing the generator stops ffmpeg: no decoding past the segment
            if k >= first:
                frames.append(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
    except Exception as e:
        raise _err(field, p, f"could not be decoded ({_first_line(e)})") from None
    finally:
        if gen is not None:
            gen.close()
    if not frames:
        raise _err(field, p, f"has no decodable frames from frame {first} on")
    return np.stack(frames)  # stack copies: the frames are writable, not views of ffmpeg's bytes


def read_image(path, field: str = "path") -> np.ndarray:  # (H, W, 3)
    """An image file as RGB; a clip gives its first frame."""
    return _open(path, field).read(0, 1)[0]


def read_video(path, fps: float | None = None, start_s: float = 0.0, end_s: float | None = None,
               field: str = "path") -> np.ndarray:  # (N, H, W, 3)
    """The frames on screen during [start_s, end_s), resampled to `fps` when given.

    An image gives 1 frame. A PNG folder without a stored rate is taken to run at `fps`.
    """
    media = _open(path, field)
    info = media.info
    if info.kind == "image":
        return media.read(0, 1)
    if fps is not None:
        _check_rate(fps, "fps", field)
    src_fps = info.fps or fps
    if src_fps is None:
        if start_s or end_s is not None:
            raise _err(field, path, "has no frame rate; pass fps to cut it by time")
        return media.read(0, info.n_frames)
    first, stop = _segment(info, src_fps, start_s, end_s, field)
    frames = media.read(first, stop)
    return frames if fps is None else resample_fps(frames, src_fps, fps)


def _segment(info: MediaInfo, fps: float, start_s: float, end_s: float | None, field: str) -> tuple[int, int]:
    """Indices [first, stop) of the frames on screen during [start_s, end_s)."""
    duration = info.n_frames / fps
    if not (math.isfinite(start_s) and 0 <= start_s < duration):
        raise _err(field, info.path, f"is {duration:.3f} s long; start_s={start_s} must be in [0, {duration:.3f})")
    if end_s is not None and not (end_s > start_s):
        raise _err(field, info.path, f"cannot be cut at end_s={end_s}; it must be after start_s={start_s}")
    first = math.floor(start_s * fps + 1e-6)
    stop = info.n_frames if end_s is None else math.ceil(min(end_s, duration) * fps - 1e-6)
    return first, max(stop, first + 1)


def _check_rate(value: float, name: str, field: str = "fps") -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise MediaError(f"{field}: {name}={value!r} must be a positive number of frames per second")


# ----------------------------------------------------------------------------- frame ops


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:  # (M, H, W, 3)
    """Frame k of the result is the source frame on screen at time k / dst_fps.

    M = round(N * dst_fps / src_fps) (halves up), at least 1; identity when the rates are equal.
    """
    _check_rate(src_fps, "src_fps")
    _check_rate(dst_fps, "dst_fps")
    n = len(frames)
    if src_fps == dst_fps or n == 0:
        return frames
    m = max(1, math.floor(n * dst_fps / src_fps + 0.5))
    idx = np.floor(np.arange(m) * src_fps / dst_fps + 1e-6).astype(np.int64)  # 1e-6: 3*(10/30) is 0.999...
    return frames[np.minimum(idx, n - 1)]


def fit(frames: np.ndarray, width: int, height: int,
        mode: str = "crop") -> np.ndarray:  # (N, height, width, 3), or (height, width, 3) for one image
    """Resize to exactly width x height. crop: cover then centre-crop; pad: fit inside, centred on
    black; stretch: ignore the aspect ratio. Resampling is PIL's Lanczos."""
    if mode not in FIT_MODES:
        raise MediaError(f"fit: mode {mode!r} is not one of {', '.join(FIT_MODES)}")
    for name, side in (("width", width), ("height", height)):
        if not (isinstance(side, (int, np.integer)) and 1 <= side <= MAX_SIDE):
            raise MediaError(f"fit: {name}={side!r} must be an integer from 1 to {MAX_SIDE}")
    single = isinstance(frames, np.ndarray) and frames.ndim == 3
    clip = frames[None] if single else frames
    _check_frames(clip, "fit", "frames", min_side=1)
    if clip.shape[1:3] != (height, width):
        clip = np.stack([_fit_one(f, int(width), int(height), mode) for f in clip])
    return clip[0] if single else clip


def _fit_one(frame: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:  # (height, width, 3)
    im, size = Image.fromarray(frame), (width, height)
    if mode == "crop":
        out = ImageOps.fit(im, size, Image.Resampling.LANCZOS)
    elif mode == "pad":
        out = ImageOps.pad(im, size, Image.Resampling.LANCZOS, color=(0, 0, 0))
    else:
        out = im.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(out)


def _check_frames(frames, field: str, what, min_side: int = MIN_SIDE) -> None:
    """frames must be uint8 (N, H, W, 3) with 1 <= N <= MAX_FRAMES and sides in range."""
    ok = (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
          and frames.shape[3] == 3 and 1 <= frames.shape[0] <= MAX_FRAMES
          and all(min_side <= s <= MAX_SIDE for s in frames.shape[1:3]))
    if not ok:
        got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise MediaError(f"{field}: {what} must be uint8 (N, H, W, 3) with 1 to {MAX_FRAMES} frames "
                         f"and sides of {min_side} to {MAX_SIDE} px; got {got}")


# ----------------------------------------------------------------------------- writing


def write_video(path, frames: np.ndarray, fps: float, overwrite: bool = False, field: str = "out",
                audio: tuple[np.ndarray, int] | None = None) -> Path:
    """Write a clip, its format chosen by `path`; returns the path written.

    .mp4: H.264 yuv420p (plays in browsers), which needs even sides; odd ones are refused
    rather than padded, so the file always has the size asked for. .gif: looping, each
    delay rounded to 1/100 s (24 fps plays at 25). "dir/", a name without suffix, or
    "dir/name_%05d.png": PNG frames (lossless, the rate stored as a tEXt "fps" field).
    audio: (samples (S,) or (S, channels) float in [-1, 1], sample rate) muxed as AAC into an .mp4,
    cut or padded with silence to the clip's length; other formats have no audio track.
    """
    p = Path(path)
    sequence = check_output(path, field)
    suffix = p.suffix.lower()
    _check_frames(frames, field, f"frames for '{path}'")
    _check_rate(fps, "fps", field)
    if sequence:
        folder, pattern = (p.parent, p.name) if suffix == ".png" else (p, SEQUENCE_PATTERN)
        return _write_sequence(folder, pattern, frames, fps, overwrite, field)
    if suffix == ".mp4" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        raise _err(field, path, f"needs even sides for H.264 yuv420p; got {frames.shape[2]}x{frames.shape[1]}: "
                   "fit() the frames to an even size, or write .gif or PNG frames")
    if audio is not None:
        audio = _check_audio(audio, suffix, len(frames) / fps, field)
    _refuse_existing(p, overwrite, field)
    with _staging(p, field) as tmp:
        if suffix == ".mp4":
            _encode_mp4(tmp, frames, fps, audio)
        else:
            _encode_gif(tmp, frames, fps)
        os.replace(tmp, p)
    return p


def _check_audio(audio, suffix: str, seconds: float, field: str) -> tuple[np.ndarray, int]:
    """-> (int16 samples (round(seconds * rate), C), rate): the track fitted to the clip, or a one-line error."""
    samples, rate = audio
    samples = np.asarray(samples, dtype=np.float32)
    samples = samples[:, None] if samples.ndim == 1 else samples
    if suffix != ".mp4":
        raise MediaError(f"{field}: only .mp4 keeps an audio track; got '{suffix or 'PNG frames'}'")
    if samples.ndim != 2 or samples.shape[1] not in (1, 2) or not np.isfinite(samples).all():
        raise MediaError(f"{field}: audio must be finite samples (S,) or (S, 1 or 2); got shape {samples.shape}")
    if not (isinstance(rate, int) and 8000 <= rate <= 192000):
        raise MediaError(f"{field}: audio sample rate must be a whole number of Hz in 8000 to 192000; got {rate!r}")
    n = round(seconds * rate)
    samples = np.pad(samples[:n], ((0, max(0, n - len(samples))), (0, 0)))   # the clip's length exactly
    return (np.clip(samples, -1, 1) * 32767).round().astype(np.int16), rate


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """int16 samples (S, C) -> a PCM WAV file (ffmpeg's audio input for the mux)."""
    import wave
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def check_output(path, field: str = "out") -> bool:
    """Refuse an output path before any work: its format and its folder. -> True for a PNG sequence."""
    p = Path(path)
    sequence = str(path).endswith(("/", os.sep)) or p.suffix == "" or (p.suffix.lower() == ".png" and "%" in p.name)
    if not sequence and p.suffix.lower() not in (".mp4", ".gif"):
        raise _err(field, path, "has an unsupported extension; allowed: .mp4, .gif, a folder "
                   "(ending in '/') or a 'name_%05d.png' pattern for PNG frames")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise _err(field, path, f"cannot be written: {str(parent)!r} is a file, not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise _err(field, path, f"cannot be written: no permission to write in {str(parent)!r}")
    if not sequence and p.is_dir():
        raise _err(field, path, "is a folder; give a file name such as out.mp4")
    return sequence


def write_image(path, frame: np.ndarray, overwrite: bool = False, field: str = "out") -> Path:
    """Write one (H, W, 3) uint8 frame as png (lossless), jpg or webp (quality 95); returns the path."""
    p = Path(path)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise _err(field, path, f"has an unsupported extension; allowed: {', '.join(IMAGE_SUFFIXES)}")
    clip = frame[None] if isinstance(frame, np.ndarray) and frame.ndim == 3 else frame
    _check_frames(clip, field, f"the frame for '{path}'", min_side=1)
    _refuse_existing(p, overwrite, field)
    with _staging(p, field) as tmp:
        Image.fromarray(clip[0]).save(tmp, quality=95)  # quality is ignored by png
        os.replace(tmp, p)
    return p


def _refuse_existing(p: Path, overwrite: bool, field: str) -> None:
    if p.exists() and not overwrite:
        raise _err(field, p, "exists; pass --overwrite to replace it")


@contextlib.contextmanager
def _staging(dest: Path, field: str, is_dir: bool = False):
    """A temp file (or folder) beside `dest`, removed if the body fails: no partial output.

    Beside, not in /tmp, so the final os.replace is an atomic rename on the same filesystem;
    the real suffix stays last because ffmpeg and PIL pick the format from it.
    """
    from engine.files import part_path, remove_stale_parts
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)  # what a writer killed before its rename left
    tmp = part_path(dest, is_dir)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException as e:
        if is_dir:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(e, MediaError) or not isinstance(e, Exception):
            raise
        raise MediaError(f"{field}: could not write '{dest}': {_first_line(e)}") from e


def _encode_mp4(tmp: Path, frames: np.ndarray, fps: float, audio: tuple[np.ndarray, int] | None = None) -> None:
    n, h, w, _ = frames.shape
    wav = tmp.with_suffix(".wav") if audio is not None else None
    if wav is not None:
        _write_wav(wav, *audio)
    gen = imageio_ffmpeg.write_frames(
        os.fspath(tmp), (w, h), fps=float(fps), codec="libx264", pix_fmt_out="yuv420p",
        quality=None, macro_block_size=1,  # 1: never let imageio rescale to multiples of 16
        ffmpeg_log_level="error", output_params=list(_H264_ARGS),
        audio_path=os.fspath(wav) if wav else None, audio_codec="aac" if wav else None)
    gen.send(None)
    try:
        for frame in frames:
            gen.send(np.ascontiguousarray(frame))
    finally:
        gen.close()  # waits for ffmpeg to finish the file
        if wav is not None:
            wav.unlink(missing_ok=True)
    # imageio-ffmpeg ignores ffmpeg's exit status, so check the result before publishing it.
    written = _count_frames(os.fspath(tmp))
    if written != n:
        raise RuntimeError(f"ffmpeg wrote {written} of {n} frames")


def _encode_gif(tmp: Path, frames: np.ndarray, fps: float) -> None:
    delay_cs = max(2, round(100 / fps))  # GIF delays are in 1/100 s; browsers slow delays < 2 to 10
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=delay_cs * 10, loop=0)


def _write_sequence(folder: Path, pattern: str, frames: np.ndarray, fps: float, overwrite: bool, field: str) -> Path:
    regex = _pattern_regex(pattern)
    if regex is None or not pattern.lower().endswith(".png"):
        raise MediaError(f"{field}: '{folder / pattern}' must hold one %d field, e.g. {SEQUENCE_PATTERN}")
    if folder.exists() and not folder.is_dir():
        raise _err(field, folder, "exists and is not a folder")
    old = [f for f in folder.iterdir() if regex.match(f.name)] if folder.is_dir() else []
    if old and not overwrite:
        raise _err(field, folder, "already holds frames; pass --overwrite to replace them")
    meta = PngInfo()
    meta.add_text("fps", repr(float(fps)))
    with _staging(folder, field, is_dir=True) as tmp:
        for k, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / (pattern % k), pnginfo=meta)
        _commit_folder(tmp, folder.absolute(), old)
    return folder


def _commit_folder(tmp: Path, folder: Path, old: list[Path]) -> None:
    """A new folder appears in one rename; an existing one (which may hold other files) gets
    its old frames removed and the new ones renamed in."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    for f in old:
        f.unlink()
    for f in sorted(tmp.iterdir()):
        os.replace(f, folder / f.name)
    tmp.rmdir()


# ----------------------------------------------------------------------------- tensors


def to_tensor(frames: np.ndarray):  # (N, H, W, 3) uint8 -> (3, N, H, W) float32 in [-1, 1]
    import torch
    from einops import rearrange

    _check_frames(frames, "frames", "frames", min_side=1)
    x = torch.from_numpy(np.require(frames, requirements=["C", "W"])).to(torch.float32) / 127.5 - 1.0  # torch wants writable memory
    return rearrange(x, "n h w c -> c n h w").contiguous()


def from_tensor(x) -> np.ndarray:  # (3, N, H, W) in [-1, 1] -> (N, H, W, 3) uint8
    import torch
    from einops import rearrange

    if x.ndim != 4 or x.shape[0] != 3:
        raise MediaError(f"frames: a tensor must be (3, N, H, W); got {tuple(x.shape)}")
    # one float32 temporary, on x's device; the copy to the host is of uint8
    u8 = x.detach().to(torch.float32).add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
    return rearrange(u8, "c n h w -> n h w c").contiguous().cpu().numpy()
