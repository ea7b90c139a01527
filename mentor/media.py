"""Media I/O: probe a file, decode video frames (decord), extract and read audio and
encode clips (ffmpeg).

Every failure on a file raises `MediaError` naming the file and what is wrong with it;
pipelines record that on the one source or clip and go on with the rest. A full disk is
not the file's fault: it raises `DiskFull` (an OSError, ENOSPC), which stops a build.

Every path reaches ffmpeg/ffprobe as `file:/absolute/path`, so a name like `-report` is
never read as an option and no other protocol is used. Playlists and other files that
make ffmpeg open further files or URLs (HLS, DASH, concat scripts, SDP) are refused.
Everything encoded is probed before it is returned (streams and duration), because
ffmpeg can exit 0 after failing to write an output's trailer.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class MediaError(RuntimeError):
    """A file that is not usable media (missing, empty, truncated, no stream, ...)."""


# How the OS words ENOSPC (strerror); ffmpeg prints it too. A clip or source error that
# holds it failed for want of space, not for its data (see `disk_full_in`).
NO_SPACE = os.strerror(errno.ENOSPC)


class DiskFull(OSError):
    """No space left on the device a file was being written to."""

    def __init__(self, path: str | os.PathLike[str], detail: str = ""):
        more = f" ({detail})" if detail else ""
        super().__init__(errno.ENOSPC, f"{NO_SPACE} writing {path}{more}: free space (or write elsewhere) "
                                       "and run again; nothing half-written is kept")
        self.path = str(path)

    def __str__(self) -> str:
        return f"[Errno {errno.ENOSPC}] {self.strerror}"


def disk_full_in(text: str | None) -> bool:
    """Whether an error message (a clip's or source's recorded error) is a full disk."""
    return bool(text) and (NO_SPACE in text or "ENOSPC" in text)


# ffmpeg's words when it refuses the options it was given (a preset, an encoder, a rate):
# the configuration's fault, not the clip's.
_SETTINGS_WORDS = ("Error setting option", "Error setting preset", "invalid preset", "Unknown preset", "Possible presets", "Unrecognized option",
                   "Unknown encoder", "Encoder not found", "Option not found", "Invalid value for option")
SETTINGS_REFUSED = "ffmpeg refused the configured settings"


def settings_error_in(text: str | None) -> bool:
    """Whether an error message says the configured settings (or a missing tool) failed,
    rather than the clip's data: such a failure is redone once the setup is fixed."""
    return bool(text) and (SETTINGS_REFUSED in text or "not found on PATH" in text)


def ff_path(path: str | os.PathLike[str]) -> str:
    """A local path as ffmpeg/ffprobe must get it: `file:` + absolute path (never an option,
    never another protocol)."""
    return "file:" + os.path.abspath(os.fspath(path))


# Demuxers that open other files or URLs named inside the input.
_REFERENCE_FORMATS = {"hls", "applehttp", "dash", "concat", "ffconcat", "sdp", "rtp", "rtsp", "tee"}
_REFERENCE_HEADS = (b"#EXTM3U", b"ffconcat", b"[playlist]", b"#EXTINF", b"v=0\n", b"v=0\r\n")


def refuse_references(path: str | os.PathLike[str], head: bytes | None = None) -> None:
    """Raise MediaError for a playlist or any file that names other files or URLs (HLS,
    DASH manifests, ffmpeg concat scripts, SDP): ffmpeg would open what it names."""
    if head is None:
        with open(path, "rb") as f:
            head = f.read(4096)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(_REFERENCE_HEADS) or (b"<MPD" in text[:2048] and text.lstrip().startswith(b"<")):
        raise MediaError(f"{path}: a playlist or manifest (HLS, DASH, concat, SDP), refused: it makes ffmpeg "
                         "read other files or URLs; give the media file itself")


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


def probe_facts(path: str | Path, info: Probe) -> dict:
    """What a later step in another process needs of `info` (the probe of the file at
    `path`), with the file version it is of and its video_origin: plain JSON, for a record."""
    _, mtime, size = _version(path)
    return {"version": [size, mtime], "has_video": info.has_video, "has_audio": info.has_audio,
            "width": info.width, "height": info.height, "fps": info.fps, "duration": info.duration,
            "origin": video_origin(path)}


def known_probe(path: str | Path, facts: dict | None) -> Probe | None:
    """The Probe of `path` from `probe_facts` taken earlier (its video_origin remembered
    too, so nothing here runs ffprobe on it again), or None when there are none or the file
    has changed since (the caller then probes)."""
    try:
        if not facts or list(facts["version"]) != [(v := _version(path))[2], v[1]]:
            return None
        _ORIGINS[v] = float(facts["origin"])
        return Probe(path=str(path), duration=float(facts["duration"]), has_video=bool(facts["has_video"]),
                     has_audio=bool(facts["has_audio"]), width=int(facts["width"]), height=int(facts["height"]),
                     fps=float(facts["fps"]))
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")
    return p


def _input(path: str | Path) -> str:
    """A checked local input for ffmpeg: exists, not empty, not a playlist; as `file:`."""
    p = _check_file(path)
    refuse_references(p)
    return ff_path(p)


# Audio on the video's timeline: ffmpeg starts an extract at the first audio sample after
# the seek point; when the audio stream starts later than the video (a container start
# offset) or has gaps, this puts silence there instead, so the samples keep their times.
AUDIO_ON_TIMELINE = "aresample=async=1:first_pts=0"


def video_origin(path: str | Path) -> float:
    """Seconds from the start of the file (where ffmpeg's -ss counts from) to its first
    video frame: time 0 of every clip span (shots and frames are timed from that frame).
    0 for a file without video; looked up once per file version (`probe` fills it in too,
    from the same ffprobe answer, so a probed file costs no second ffprobe)."""
    key = _version(path)
    if key not in _ORIGINS:
        cmd = [_require("ffprobe"), "-v", "error", "-protocol_whitelist", "file", "-print_format", "json",
               "-show_entries", "stream=codec_type,start_time:stream_disposition=attached_pic:format=start_time",
               ff_path(path)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            return 0.0  # the call that reads the file says what is wrong with it
        _remember_origin(key, json.loads(res.stdout or "{}"))
    return _ORIGINS[key]


_ORIGINS: dict[tuple[str, int, int], float] = {}  # (path, mtime_ns, size) -> video_origin


def _version(path: str | Path) -> tuple[str, int, int]:
    p = Path(path)
    st = p.stat()
    return str(p), st.st_mtime_ns, st.st_size


def _remember_origin(key: tuple[str, int, int], info: dict) -> None:
    """video_origin of the file version `key` from ffprobe's JSON (streams and format)."""
    video = next((st for st in info.get("streams", []) if st.get("codec_type") == "video"
                  and not st.get("disposition", {}).get("attached_pic", 0)), None)
    try:
        origin = float(video["start_time"]) - float(info["format"]["start_time"]) if video else 0.0
    except (KeyError, TypeError, ValueError):
        origin = 0.0
    if len(_ORIGINS) > 512:
        _ORIGINS.clear()
    _ORIGINS[key] = max(0.0, origin)


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def check_output(dst: str | Path, video: bool, audio: bool, duration: float | None = None) -> Probe:
    """Probe a file ffmpeg just wrote: it must be readable with the streams asked for and
    at least half the expected duration. Raises DiskFull when it is broken and its disk
    is (nearly) full, MediaError naming the file otherwise."""
    dst = Path(dst)
    if audio and not video and dst.suffix.lower() in (".wav", ".flac"):
        sound = _sound_info(dst)  # in-process: no ffprobe start-up (about 0.09 CPU-s) per file
        if sound is not None and sound.duration > 0 and not (duration and sound.duration < 0.5 * duration):
            return sound
    if video and not audio and dst.suffix.lower() in (".mp4", ".mov", ".m4v"):
        picture = _video_info(dst)  # in-process, as for sound: no ffprobe per encoded clip
        if picture is not None and picture.duration > 0 and not (duration and picture.duration < 0.5 * duration):
            return picture
    try:
        info = probe(dst)
        why = ("no video stream" if video and not info.has_video else
               "no audio stream" if audio and not info.has_audio else
               f"{info.duration:.3f} s long, expected {duration:.3f} s"
               if duration and info.duration < 0.5 * duration else None)
    except MediaError as e:
        info, why = None, str(e).removeprefix(f"{dst}: ")
    if why is None:
        return info  # type: ignore[return-value]
    if _free_bytes(dst) < (1 << 20):
        raise DiskFull(dst, why)
    raise MediaError(f"{dst}: encoded output is broken ({why}); nothing kept")


def _sound_info(path: Path) -> Probe | None:
    """A WAV or FLAC file's Probe from its header (libsndfile); None when it cannot say
    (check_output then asks ffprobe, whose answer names what is wrong)."""
    try:
        import soundfile

        info = soundfile.info(str(path))
    except Exception:  # a header libsndfile does not read: ffprobe decides
        return None
    codec = "flac" if info.format == "FLAC" else {"PCM_16": "pcm_s16le"}.get(info.subtype, info.subtype.lower())
    return Probe(path=str(path), duration=info.frames / info.samplerate, has_video=False, has_audio=True,
                 audio_codec=codec, sample_rate=int(info.samplerate), size_bytes=path.stat().st_size)


# sound files read in-process when whole, mono and at the rate asked for: the clips' own audio,
# which the vad, diarization, sync and audio-feature stages each read again (ffprobe for its
# origin plus an ffmpeg decode: 0.24 CPU-s the first time, 0.1 after, against 0.004; the same
# samples, bit for bit, as ffmpeg's f32le)
SOUND_SUFFIXES = (".wav", ".flac")


def _sound_samples(path: Path, sample_rate: int) -> np.ndarray | None:
    """A mono WAV or FLAC file's samples as float32 (libsndfile), when it is at
    `sample_rate` and decodes whole; None otherwise (the caller asks ffmpeg, which resamples,
    downmixes and names what is wrong with a broken file)."""
    if path.suffix.lower() not in SOUND_SUFFIXES:
        return None
    try:
        import soundfile

        info = soundfile.info(str(path))
        if info.channels != 1 or info.samplerate != sample_rate or info.frames <= 0:
            return None
        audio, _ = soundfile.read(str(path), dtype="float32", always_2d=False)
    except Exception:  # a file libsndfile does not read: ffmpeg decides
        return None
    return audio if audio.ndim == 1 and len(audio) == info.frames else None


def _video_info(path: Path) -> Probe | None:
    """An MP4 file's video Probe from its index (decord, in-process: 0.006 CPU-s against
    ffprobe's 0.09) after its boxes are checked whole; None when either cannot say
    (check_output then asks ffprobe, whose answer names what is wrong). Audio is not
    looked at: call it for a file written without audio."""
    try:
        if _mp4_truncated(path) is not None:
            return None
        import decord

        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n, fps = len(vr), float(vr.get_avg_fps())
        _, end = frame_times(vr, fps or 25.0)
        height, width = vr[0].shape[:2]  # the first frame decodes
    except Exception:  # decord's own error types: ffprobe decides
        return None
    if n == 0:
        return None
    return Probe(path=str(path), duration=end, has_video=True, has_audio=False, width=int(width),
                 height=int(height), fps=fps, num_frames=n, size_bytes=path.stat().st_size)


NOT_MEDIA = "not a media file: no container format recognised"
# what an ISO-BMFF (mp4/mov/m4a) file's first box is called: a file that starts otherwise
# and that ffmpeg cannot open is not a cut-short MP4, whatever its name says
_BMFF_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}


def _not_media(stderr: str, path: str | Path) -> bool:
    """ffmpeg found no demuxer that reads the file (its "Invalid data found when
    processing input"), and the bytes do not start like an MP4 that was cut short."""
    if "Invalid data found when processing input" not in stderr:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[4:8] not in _BMFF_BOXES


def _why(stderr: str, path: str | Path, default: str) -> str:
    """The useful part of ffmpeg's complaint: its distinct lines, without the path."""
    lines = []
    for line in stderr.strip().splitlines():
        line = line.replace(f"{ff_path(path)}: ", "").replace(f"{path}: ", "").strip()
        if line.startswith("[") and "] " in line:  # "[mov,mp4,... @ 0x55...] moov atom not found"
            line = line.split("] ", 1)[1]
        if line and line not in lines:
            lines.append(line)
    why = "; ".join(lines)[:300] or default
    if "moov atom not found" in why:
        why = f"truncated or unfinished MP4, no moov atom ({why})"
    return why


def _mp4_truncated(p: Path) -> str | None:
    """For an ISO-BMFF file (mp4/mov/m4a), why it is cut short, else None.

    Walks the top-level boxes: a box that claims more bytes than the file has means the
    file was cut (a download or a copy that stopped), even when ffprobe, reading only the
    index at the front (+faststart), sees nothing wrong.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[4:8] != b"ftyp":
            return None
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            hdr = f.read(16)
            box_size, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8].decode("latin-1")
            if box_size == 1 and len(hdr) >= 16:
                box_size = int.from_bytes(hdr[8:16], "big")
            elif box_size == 0:  # extends to the end of the file
                return None
            if box_size < 8:
                return f"corrupt MP4 box '{kind}' at byte {pos}"
            if pos + box_size > size:
                return f"truncated: MP4 box '{kind}' needs {pos + box_size} bytes, the file has {size}"
            pos += box_size
    return None


def probe(path: str | Path) -> Probe:
    """What a media file holds, from ffprobe. Raises MediaError for a non-media file,
    an empty or truncated one, or one with neither a video nor an audio stream."""
    p = _check_file(path)
    refuse_references(p)
    cmd = [_require("ffprobe"), "-v", "error", "-protocol_whitelist", "file", "-print_format", "json",
           "-show_format", "-show_streams", ff_path(p)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0 and _not_media(res.stderr, p):
        raise MediaError(f"{p}: not readable media ({NOT_MEDIA})")
    if res.returncode != 0:
        raise MediaError(f"{p}: not readable media ({_why(res.stderr, p, 'ffprobe failed')})")
    cut = _mp4_truncated(p)
    if cut:
        raise MediaError(f"{p}: {cut}")
    info = json.loads(res.stdout or "{}")
    _remember_origin(_version(p), info)
    fmt = str(info.get("format", {}).get("format_name", ""))
    if _REFERENCE_FORMATS & set(fmt.split(",")):
        raise MediaError(f"{p}: {fmt} input refused: it makes ffmpeg read other files or URLs; give the media file itself")
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


def open_video(path: str | Path, size: tuple[int, int] | None = None):
    """A decord VideoReader on `path` (one decoding thread), frames resized to `size`
    (width, height) while decoding when given. Raises MediaError saying why the file
    cannot be decoded (not media, truncated, audio only, ...)."""
    import decord

    _check_file(path)
    refuse_references(path)
    try:
        kw = {"width": size[0], "height": size[1]} if size else {}
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **kw)
    except Exception as e:  # decord raises its own DECORDError and RuntimeError
        info = probe(path)  # raises with a clear reason for a non-media or truncated file
        if not info.has_video:
            raise MediaError(f"{path}: no video stream (audio only)") from None
        raise MediaError(f"{path}: cannot decode video ({str(e).splitlines()[0][:200]})") from None
    if len(vr) == 0:
        raise MediaError(f"{path}: video stream has no frames")
    return vr


def read_frames(
    path: str | Path,
    fps: float | None = None,
    start: float = 0.0,
    end: float | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode frames between `start` and `end` seconds, resampled to `fps` (nearest frame).

    Times are the frames' own timestamps, so a variable-frame-rate file resamples in
    sync: the frame at time t is the one whose timestamp is nearest t, not frame
    round(t * average fps). Returns TxHxWx3 uint8 RGB. `size` is (width, height) to
    resize to while decoding.
    """
    return read_frame_sets(path, [(fps, start, end)], size=size)[0]


FRAME_CHUNK = 8  # frames decoded per call by read_frame_sets (bounds the full-size frames held)


def read_frame_sets(
    path: str | Path,
    samplings: list[tuple[float | None, float, float | None]],
    sizes: list[tuple[int, int] | None] | None = None,
    size: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """Several samplings `(fps, start, end)` of one file (each as read_frames would pick
    its frames), from one reader in one decoding pass over the union of their frames.

    `size` (width, height): every frame resized while decoding. `sizes`, one per sampling:
    the file is decoded at its own size and that sampling's frames are resized to its size
    (cv2 INTER_AREA; None: the decoded size), frame by frame, so a full-resolution pass
    never holds more than a few full-size frames it does not return.
    """
    vr = open_video(path, size)
    src_fps = float(vr.get_avg_fps()) or 25.0
    stamps, last = frame_times(vr, src_fps)
    picks = []
    for fps, start, end in samplings:
        end = last if end is None else min(end, last)
        times = np.arange(start, end - 1e-6, 1.0 / (fps or src_fps))
        if len(times) == 0:
            raise MediaError(f"{path}: no frames between {start:.2f}s and {end:.2f}s")
        picks.append(nearest_frames(stamps, times))
    sizes = sizes or [None] * len(samplings)
    if len(picks) == 1 and sizes[0] is None:
        return [frames_at(vr, path, picks[0])]
    import cv2

    union = np.unique(np.concatenate(picks))  # ascending: decoded in order, no seek back
    out: list[list[np.ndarray | None]] = [[None] * len(p) for p in picks]
    for c in range(0, len(union), FRAME_CHUNK):
        chunk = union[c:c + FRAME_CHUNK]
        frames = frames_at(vr, path, chunk)
        for j, i in enumerate(chunk):
            for s, p in enumerate(picks):
                for k in np.flatnonzero(p == i):
                    f = frames[j]
                    out[s][k] = cv2.resize(f, sizes[s], interpolation=cv2.INTER_AREA) if sizes[s] else f.copy()
    return [np.stack(o) for o in out]


def frames_at(vr, path: str | Path, idx) -> np.ndarray:
    """The frames `idx` (ascending indices) of an open reader, in one decoding pass:
    TxHxWx3 uint8 RGB; MediaError when the data ends early."""
    try:
        return vr.get_batch(list(idx)).asnumpy()
    except Exception as e:
        raise MediaError(f"{path}: decoding failed part-way ({str(e).splitlines()[0][:200]}); the file may be truncated") from None


def frame_times(vr, fps: float) -> tuple[np.ndarray, float]:
    """(each frame's start time, when the last frame ends) in seconds from the first frame,
    from a decord VideoReader's timestamps; from the frame count over `fps` when the
    container gives no usable timestamps."""
    n = len(vr)
    try:
        stamps = np.asarray(vr.get_frame_timestamp(list(range(n))), np.float64).reshape(n, 2)
    except Exception:  # decord raises its own error types for odd containers
        stamps = np.full((n, 2), np.nan)
    starts, ends = stamps[:, 0], stamps[:, 1]
    if not np.all(np.isfinite(stamps)) or np.any(np.diff(starts) <= 0) or ends[-1] <= starts[-1]:
        return np.arange(n) / fps, n / fps
    return starts - starts[0], float(ends[-1] - starts[0])


def nearest_frames(starts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame whose start time is nearest each of `times` (starts ascending)."""
    right = np.clip(np.searchsorted(starts, times), 1, max(len(starts) - 1, 1))
    left = right - 1
    pick = np.where(np.abs(times - starts[left]) <= np.abs(starts[np.minimum(right, len(starts) - 1)] - times),
                    left, right)
    return np.clip(pick, 0, len(starts) - 1).astype(int)


def extract_audio(
    src: str | Path, dst: str | Path, sample_rate: int = 16000, start: float = 0.0,
    duration: float | None = None, shift: float = 0.0,
) -> Path:
    """Write mono audio at `sample_rate` (format from dst's suffix: .flac or .wav).

    `start` is on the video's timeline (0 = the first video frame); the audio is cut
    from the same timeline, its stream start time honoured and gaps filled with silence
    (AUDIO_ON_TIMELINE). `shift` seconds delays the audio (positive) or advances it
    (negative) relative to the video, used to correct a measured audio-visual offset.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    src_in = _input(src)
    at = video_origin(src) + start - shift  # where the audio is read from, in the file's time
    ss = max(0.0, at)
    pad = max(0.0, -at)  # seconds of silence before the first sample
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-y", "-ss", f"{ss:.3f}"]
    if duration is not None:
        if duration <= 0:
            raise ValueError(f"duration={duration!r}: must be > 0 seconds")
        # An input-side limit: an output-side -t would also count the delay and cut it
        # off the end.
        cmd += ["-t", f"{max(duration - pad, 0.001):.3f}"]
    cmd += ["-protocol_whitelist", "file", "-i", src_in]
    cmd += ["-af", _timeline_audio(duration, pad)]
    cmd += ["-vn", "-ac", "1", "-ar", str(sample_rate), ff_path(dst)]
    _run(cmd, src, "extract audio", dst)
    check_output(dst, video=False, audio=True, duration=duration)
    return dst


def _timeline_audio(duration: float | None, pad: float = 0.0) -> str:
    """extract_audio's filter chain: the samples on the video's timeline, `pad` seconds of
    silence first, padded with silence or cut to `duration` seconds when given."""
    af = [AUDIO_ON_TIMELINE] + ([f"adelay={int(round(pad * 1000))}:all=1"] if pad > 0 else [])
    if duration is not None:
        af += [f"apad=whole_dur={duration:.3f}", f"atrim=end={duration:.3f}"]
    return ",".join(af)


def read_audio(path: str | Path, sample_rate: int = 16000, start: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate` (resampled by ffmpeg if needed),
    of [start, start + duration) seconds (the whole file by default), piped, no temp file.
    Times are on the video's timeline when the file has video (as extract_audio)."""
    src_in = _input(path)
    if not start and duration is None and (whole := _sound_samples(Path(path), sample_rate)) is not None:
        return whole
    at = video_origin(path) + start
    seek = ["-ss", f"{at:.3f}"] if at else []
    limit = ["-t", f"{duration:.3f}"] if duration else []
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", *seek, "-protocol_whitelist", "file,pipe", "-i", src_in,
           *limit, "-af", AUDIO_ON_TIMELINE, "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    res = subprocess.run(cmd, capture_output=True, timeout=600)
    err = res.stderr.decode(errors="replace")
    if res.returncode != 0:
        if "does not contain any stream" in err or "matches no streams" in err:
            raise MediaError(f"{path}: no audio stream (video only)")
        if _not_media(err, path):
            raise MediaError(f"{path}: {NOT_MEDIA}")
        raise MediaError(f"{path}: cannot read audio ({_why(err, path, 'ffmpeg failed')})")
    if "partial file" in err:  # ffmpeg decodes what is there and exits 0
        raise MediaError(f"{path}: truncated: audio data ends early ({_why(err, path, 'partial file')})")
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
    threads: int = 1,
    source_fps: float | None = None,
    audio_to: str | Path | None = None,
    audio_rate: int = 16000,
) -> Path:
    """Cut [start, end) of `src`, crop a square (x, y, side in source pixels), scale to
    `size` x `size` at `fps` and encode H.264 (yuv420p, +faststart); AAC audio if asked.
    `source_fps`: the source's (average) rate when known, which orders the filters (the
    output is the same either way).
    `audio_to`: the same ffmpeg also writes the span's mono audio at `audio_rate` there (its
    suffix the format), the samples extract_audio(src, audio_to, audio_rate, start,
    end - start) gives, without a second ffmpeg opening and seeking the source.
    The outputs are probed before it returns (MediaError naming the one that is broken)."""
    src_in = _input(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # A source faster than `fps` (50 or 60 at 25) gets the rate first, so the frames it drops
    # are never cropped or scaled (it picks frames by timestamp, which crop and scale keep:
    # the same output); a slower one gets it last, so the frames it repeats are scaled once.
    rate_first = bool(source_fps and source_fps > fps)
    vf = [f"fps={fps:g}"] if rate_first else []
    if crop is not None:
        x, y, s = crop
        vf.append(f"crop={s}:{s}:{x}:{y}")
    vf += [f"scale={size}:{size}:flags=bicubic", *([] if rate_first else [f"fps={fps:g}"]), "format=yuv420p"]
    at = video_origin(src) + start  # spans are timed from the first video frame
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-y", "-threads", str(threads), "-ss", f"{at:.3f}",
           "-protocol_whitelist", "file", "-i", src_in,
           "-t", f"{end - start:.3f}", "-vf", ",".join(vf), "-c:v", "libx264", "-crf", str(crf),
           "-preset", preset, "-threads", str(threads), "-movflags", "+faststart"]
    cmd += ["-c:a", "aac", "-ac", "1", "-ar", "16000"] if with_audio else ["-an"]
    cmd.append(ff_path(dst))
    if audio_to is not None:  # a second output: options after the first one's name are its own
        audio_to = Path(audio_to)
        audio_to.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["-t", f"{end - start:.3f}", "-af", _timeline_audio(end - start), "-vn", "-ac", "1",
                "-ar", str(audio_rate), ff_path(audio_to)]
    _run(cmd, src, "encode clip", dst)
    check_output(dst, video=True, audio=with_audio, duration=end - start)
    if audio_to is not None:
        check_output(audio_to, video=False, audio=True, duration=end - start)
    return dst


def write_video(frames: np.ndarray, dst: str | Path, fps: float, audio: str | Path | None = None, crf: int = 18) -> Path:
    """Encode TxHxWx3 uint8 RGB frames to H.264 mp4 (optionally muxing an audio file)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    cmd = [_require("ffmpeg"), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
    if audio is not None:
        cmd += ["-protocol_whitelist", "file", "-i", _input(audio), "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-crf", str(crf), "-preset", "veryfast", "-pix_fmt", "yuv420p", ff_path(dst)]
    res = subprocess.run(cmd, input=np.ascontiguousarray(frames, dtype=np.uint8).tobytes(), capture_output=True, timeout=600)
    err = res.stderr.decode(errors="replace")
    if disk_full_in(err):
        dst.unlink(missing_ok=True)
        raise DiskFull(dst, err.strip()[-200:])
    if res.returncode != 0:
        raise MediaError(f"{dst}: encoding failed ({err.strip()[-300:]})")
    check_output(dst, video=True, audio=audio is not None)
    return dst


def _run(cmd: list[str], src: str | Path, what: str, dst: Path | None = None) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if dst is not None and disk_full_in(res.stderr):  # ffmpeg may still exit 0 (trailer not written)
        dst.unlink(missing_ok=True)
        raise DiskFull(dst, _why(res.stderr, dst, NO_SPACE))
    no_stream = "does not contain any stream" in res.stderr or "matches no streams" in res.stderr
    if res.returncode != 0 and no_stream and what == "extract audio":
        raise MediaError(f"{src}: no audio stream (video only)")
    if res.returncode != 0 and no_stream and what == "encode clip":
        raise MediaError(f"{src}: no video stream (audio only)")
    if res.returncode != 0 and any(w in res.stderr for w in _SETTINGS_WORDS):
        raise MediaError(f"{src}: cannot {what}: {SETTINGS_REFUSED} ({_why(res.stderr, src, 'ffmpeg failed')}); "
                         "fix video.* / audio.* in the config")
    if res.returncode != 0 and _not_media(res.stderr, src):
        raise MediaError(f"{src}: {NOT_MEDIA}")
    if res.returncode != 0:
        raise MediaError(f"{src}: cannot {what} ({_why(res.stderr, src, 'ffmpeg failed')})")
    if "partial file" in res.stderr:  # ffmpeg used what was there and exited 0
        raise MediaError(f"{src}: truncated: cannot {what}, the data ends early ({_why(res.stderr, src, 'partial file')})")
