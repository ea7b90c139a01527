"""Media I/O: probe a file, decode video frames (decord), extract and read audio and
encode clips (ffmpeg).

Every failure on a file raises `MediaError` naming the file and what is wrong with it;
pipelines record that on the one source or clip and go on with the rest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class MediaError(RuntimeError):
    """A file that is not usable media (missing, empty, truncated, no stream, ...)."""


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MediaError(f"'{tool}' not found on PATH: install it (Debian: apt-get install ffmpeg), or run `make setup`")
    return path


@dataclass(frozen=True)
class Probe:
    path: str
    duration: float  # seconds
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    num_frames: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    sample_rate: int = 0
    size_bytes: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def probe(path: str | Path) -> Probe:
    """What a media file holds, from ffprobe. Raises MediaError for a non-media file."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")
    cmd = [_require("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(p)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["ffprobe failed"])[-1]
        raise MediaError(f"{p}: not readable media ({why})")
    info = json.loads(res.stdout or "{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and s.get("disposition", {}).get("attached_pic", 0) == 0), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise MediaError(f"{p}: no video or audio stream")
    duration = float(info.get("format", {}).get("duration") or (video or audio or {}).get("duration") or 0.0)
    fps = 0.0
    if video is not None:
        num, _, den = (video.get("avg_frame_rate") or video.get("r_frame_rate") or "0/1").partition("/")
        fps = float(num) / float(den or 1) if float(den or 1) else 0.0
    return Probe(
        path=str(p),
        duration=duration,
        has_video=video is not None,
        has_audio=audio is not None,
        width=int(video.get("width", 0)) if video else 0,
        height=int(video.get("height", 0)) if video else 0,
        fps=round(fps, 4),
        num_frames=int(video.get("nb_frames", 0) or round(duration * fps)) if video else 0,
        video_codec=video.get("codec_name", "") if video else "",
        audio_codec=audio.get("codec_name", "") if audio else "",
        sample_rate=int(audio.get("sample_rate", 0)) if audio else 0,
        size_bytes=p.stat().st_size,
    )


def read_frames(
    path: str | Path,
    fps: float | None = None,
    start: float = 0.0,
    end: float | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode frames between `start` and `end` seconds, resampled to `fps` (nearest frame).

    Returns TxHxWx3 uint8 RGB. `size` is (width, height) to resize to while decoding.
    """
    import decord

    try:
        kw = {"width": size[0], "height": size[1]} if size else {}
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **kw)
    except Exception as e:  # decord raises its own DECORDError and RuntimeError
        raise MediaError(f"{path}: cannot decode video ({str(e).splitlines()[0][:200]})") from None
    n = len(vr)
    if n == 0:
        raise MediaError(f"{path}: video stream has no frames")
    src_fps = float(vr.get_avg_fps()) or 25.0
    end = n / src_fps if end is None else min(end, n / src_fps)
    step = 1.0 / (fps or src_fps)
    times = np.arange(start, end - 1e-6, step)
    idx = np.clip(np.round(times * src_fps).astype(int), 0, n - 1)
    if len(idx) == 0:
        raise MediaError(f"{path}: no frames between {start:.2f}s and {end:.2f}s")
    try:
        return vr.get_batch(list(idx)).asnumpy()
    except Exception as e:
        raise MediaError(f"{path}: decoding failed part-way ({str(e).splitlines()[0][:200]}); the file may be truncated") from None


def extract_audio(
    src: str | Path, dst: str | Path, sample_rate: int = 16000, start: float = 0.0,
    duration: float | None = None, shift: float = 0.0,
) -> Path:
    """Write mono audio at `sample_rate` (format from dst's suffix: .flac or .wav).

    `shift` seconds delays the audio (positive) or advances it (negative) relative to
    the video, used to correct a measured audio-visual offset.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ss = max(0.0, start - shift)
    pad = max(0.0, shift - start)
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-y", "-ss", f"{ss:.3f}", "-i", str(src)]
    if duration is not None:
        cmd += ["-t", f"{duration - pad:.3f}"]
    af = [f"adelay={int(pad * 1000)}:all=1"] if pad > 0 else []
    if duration is not None:
        af.append(f"apad=whole_dur={duration:.3f}")
    if af:
        cmd += ["-af", ",".join(af)]
    cmd += ["-vn", "-ac", "1", "-ar", str(sample_rate), str(dst)]
    _run(cmd, src, "extract audio")
    return dst


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate` (resampled by ffmpeg if needed)."""
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    res = subprocess.run(cmd, capture_output=True, timeout=600)
    if res.returncode != 0:
        why = (res.stderr.decode(errors="replace").strip().splitlines() or ["ffmpeg failed"])[-1]
        raise MediaError(f"{path}: cannot read audio ({why})")
    audio = np.frombuffer(res.stdout, dtype=np.float32).copy()
    if audio.size == 0:
        raise MediaError(f"{path}: no audio samples")
    return audio


def encode_clip(
    src: str | Path,
    dst: str | Path,
    start: float,
    end: float,
    fps: float,
    size: int,
    crop: tuple[int, int, int] | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    with_audio: bool = False,
) -> Path:
    """Cut [start, end) of `src`, crop a square (x, y, side in source pixels), scale to
    `size` x `size` at `fps` and encode H.264 (yuv420p, +faststart); AAC audio if asked."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    vf = []
    if crop is not None:
        x, y, s = crop
        vf.append(f"crop={s}:{s}:{x}:{y}")
    vf += [f"scale={size}:{size}:flags=bicubic", f"fps={fps:g}", "format=yuv420p"]
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-y", "-ss", f"{start:.3f}", "-i", str(src),
           "-t", f"{end - start:.3f}", "-vf", ",".join(vf), "-c:v", "libx264", "-crf", str(crf),
           "-preset", preset, "-movflags", "+faststart"]
    cmd += ["-c:a", "aac", "-ac", "1", "-ar", "16000"] if with_audio else ["-an"]
    cmd.append(str(dst))
    _run(cmd, src, "encode clip")
    return dst


def write_video(frames: np.ndarray, dst: str | Path, fps: float, audio: str | Path | None = None, crf: int = 18) -> Path:
    """Encode TxHxWx3 uint8 RGB frames to H.264 mp4 (optionally muxing an audio file)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
    if audio is not None:
        cmd += ["-i", str(audio), "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-crf", str(crf), "-preset", "veryfast", "-pix_fmt", "yuv420p", str(dst)]
    res = subprocess.run(cmd, input=np.ascontiguousarray(frames, dtype=np.uint8).tobytes(), capture_output=True, timeout=600)
    if res.returncode != 0:
        raise MediaError(f"{dst}: encoding failed ({res.stderr.decode(errors='replace').strip()[-300:]})")
    return dst


def _run(cmd: list[str], src: str | Path, what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
        raise MediaError(f"{src}: cannot {what} ({why})")
