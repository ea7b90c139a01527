"""A synthetic store for the motion benchmarks, fast to make, with talking-face expressions.

`write_synthetic_store` (mentor.synthstore) renders every frame of every clip's mesh into
its mp4, which takes most of its time (about 0.25 s a frame on this 2-core machine). The
motion model reads no video (only `smplx.*` and `audio.logmel`), so for benchmarks of
tens of clips the mesh render is swapped for a flat grey frame: the store is otherwise the
same (the same espeak speech, SMPL-X motion with the jaw on the speech envelope, audio
features, identities and splits, written through StoreWriter).

Expression. In mentor.synthstore every expression coefficient is a random smooth curve
(amplitude 1, nothing predicts it), and the synthetic body's first expression blend shapes
move the lips by up to 10 mm: most of the lip motion would be noise no model can learn.
A real talking face is not like that: the lips' shape follows the sounds (open on loud
vowels, rounded on "oo"/"o"/"w", spread and tense on fricatives), the brows rise with
emphasis, and each person has a resting expression of their own. With
`expression="speech"` (the default) the clip's expression is made that way
(`talking_expression`), from the clip's own audio and identity:

    e0 mouth open   0.9 * speaker gain * envelope (smoothed)           + 0.15 * noise
    e1 smile        the identity's resting level (-0.6..0.6)            + 0.25 * slow noise
    e2 brows up     0.8 * emphasis (0.5 s envelope above its mean)      + 0.2 * noise
    e3 pucker       1.2 * rounding (low-band energy share) on voiced frames + 0.15 * noise
    e4 eyelids      blinks at random times (not predictable; upper face)
    e5 fricative    1.0 * high-band energy share on speech frames       + 0.15 * noise
    e6..            0.2 * noise
Noise is a random smooth curve (annotate.smplx_synth._smooth). So most of the mouth is
learnable from the audio, some of it is not, and a held-out speaker's resting expression
is visible in the reference frame. `expression="random"` keeps mentor.synthstore's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import numpy as np

EXPRESSIONS = ("speech", "random")


def _flat_frame(vertices, faces, camera, width, height, color, background, cull=True):
    return np.full((height, width, 3), 128, np.uint8)


def speech_bands(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> dict[str, np.ndarray]:
    """Per video frame: rms (T,), and the shares (T,) of spectral energy below 1 kHz ("low")
    and above 3 kHz ("high") in a 64 ms window centred on the frame."""
    hop = sample_rate / fps
    n = 1024
    x = np.asarray(audio, np.float64)
    win = np.hanning(n)
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    low_b, mid_b, high_b = (f > 80) & (f < 1000), (f >= 1000) & (f < 3000), f >= 3000
    rms, low, high = np.zeros(num_frames), np.zeros(num_frames), np.zeros(num_frames)
    for k in range(num_frames):
        c = int(round((k + 0.5) * hop))
        seg = x[max(0, c - n // 2):c + n // 2]
        seg = np.pad(seg, (0, n - len(seg)))
        p = np.abs(np.fft.rfft(seg * win)) ** 2
        tot = p[low_b].sum() + p[mid_b].sum() + p[high_b].sum() + 1e-12
        low[k], high[k] = p[low_b].sum() / tot, p[high_b].sum() / tot
        rms[k] = np.sqrt(np.mean(seg * seg))
    return {"rms": rms, "low": low, "high": high}


def _smooth3(x: np.ndarray) -> np.ndarray:
    return np.convolve(np.pad(x, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")


def talking_expression(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int, num_expression: int,
                       identity_index: int, seed: int) -> np.ndarray:
    """(T, E) float32 expression of a face saying `audio` (see the module docstring)."""
    from annotate.smplx_synth import _smooth
    from mentor.testmedia import speech_envelope

    if num_expression < 6:
        raise ValueError(f"num_expression={num_expression}: the talking expression uses 6 coefficients or more")
    T = num_frames
    rng = np.random.default_rng(seed)
    who = np.random.default_rng(5000 + identity_index)  # the identity's own style
    gain, rest_smile = who.uniform(0.8, 1.2), who.uniform(-0.6, 0.6)
    env = _smooth3(speech_envelope(audio, sample_rate, fps, T).astype(np.float64))
    bands = speech_bands(audio, sample_rate, fps, T)
    speaking = bands["rms"] > 0.05 * max(bands["rms"].max(), 1e-9)
    voiced = env > 0.15
    rounding = _smooth3(np.clip((bands["low"] - 0.75) / 0.25, 0, 1) * voiced)
    fricative = _smooth3(np.clip(bands["high"] / 0.15, 0, 1) * speaking)
    k = max(1, int(round(0.5 * fps)))
    slow = np.convolve(np.pad(env, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")
    emphasis = np.clip(slow - slow.mean(), 0, None) * 2.0

    def noise(amp, freqs=(0.3, 2.0)):
        return _smooth(rng, T, 1, fps, amp, freqs)[:, 0]

    e = _smooth(rng, T, num_expression, fps, 0.2, (0.3, 2.0))
    e[:, 0] = 0.9 * gain * env + noise(0.15)
    e[:, 1] = rest_smile + noise(0.25, (0.05, 0.3))
    e[:, 2] = 0.8 * emphasis + noise(0.2)
    e[:, 3] = 1.2 * rounding + noise(0.15)
    blinks = np.zeros(T)
    t = rng.uniform(0.5, 3.0) * fps
    while t < T:
        i = int(t)
        blinks[i:i + 3] = (0.6, 1.0, 0.6)[:len(blinks[i:i + 3])]
        t += rng.uniform(2.0, 5.0) * fps
    e[:, 4] = blinks
    e[:, 5] = 1.0 * fricative + noise(0.15)
    return e.astype(np.float32)


def _talking_make_clip(original):
    """mentor.synthstore.make_clip with the expression replaced by `talking_expression`."""
    from mentor.synthstore import SAMPLE_RATE

    def make_clip(body, num_frames, fps, size, seed=0, identity_index=0):
        clip = original(body, num_frames, fps, size, seed=seed, identity_index=identity_index)
        E = clip["arrays"]["smplx.expression"].shape[-1]
        clip["arrays"]["smplx.expression"] = talking_expression(clip["audio"], SAMPLE_RATE, fps, num_frames, E,
                                                                identity_index, seed)
        return clip

    return make_clip


def fast_synthetic_store(root: str | Path, n_clips: int, seconds: float, identities: int, seed: int = 0,
                         size: int = 32, splits: tuple[str, ...] = ("train", "val", "test"),
                         expression: str = "speech") -> Path:
    """write_synthetic_store without the mesh render, with talking-face expressions (see the
    module docstring); reused when `root` already holds a store."""
    import mentor.synthstore as synthstore

    if expression not in EXPRESSIONS:
        raise ValueError(f"expression={expression!r}: use one of {EXPRESSIONS}")
    root = Path(root)
    if (root / "store.json").exists():
        return root
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("mentor.synthstore.render_mesh", _flat_frame))
        if expression == "speech":
            stack.enter_context(mock.patch("mentor.synthstore.make_clip", _talking_make_clip(synthstore.make_clip)))
        return synthstore.write_synthetic_store(root, n_clips=n_clips, seconds=seconds, size=size, seed=seed,
                                                identities=identities, splits=splits, shard_bytes=2_000_000)
