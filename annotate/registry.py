"""Every clip step of curation, in the order it runs: the one list to change.

Adding an annotator is one new module in annotate/ (a plain class: `name`, `reads`,
`writes`, `__init__(section)` loads its models once, `__call__(record) -> record`) and
one line here; give it a config section in mentor/config.py's AnnotateConfig when it has
settings (`enabled` switches it). The graph is checked when it is built
(mentor.contracts.check_graph): a stage that reads a field nothing before it writes fails
then, naming the stage and the field.

Constructors are "module:Class" strings, imported only where the stage is built (the
worker that runs it) or its contract is read (the driver, for the enabled stages only),
so the driver never loads a model. Reads and writes come from the class's own attributes;
the two annotators whose modules the body-model work owns (landmarks, smplx) have theirs
written on their lines. A line may also say `when` (a config value that must be set, a
weights path) and `on_rejected` (a config switch to run it on rejected clips too).

pool "curate": on the source span, before and including the encode (the filter actors);
pool "annotate": on the encoded clip (the annotate actors). pipelines/ decides the
resources of each pool; nothing here knows about Ray.
"""

from __future__ import annotations

from annotate.landmarks import ARRAYS as LANDMARK_ARRAYS
from annotate.landmarks import FACE, FILTER_FACE_BOX, LEFT_HAND, POSE, RIGHT_HAND
from annotate.landmarks import SCORES as LANDMARK_SCORES
from mentor.contracts import Stage, annotation, array, enabled_stages, file, record_field, score
from mentor.curate.encode import AUDIO, VIDEO

# SMPL-X parameters as annotate.smplx_fit writes them (T rows each; betas and camera repeat)
SMPLX_ARRAYS = tuple(f"smplx.{k}" for k in (
    "betas", "global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose",
    "right_hand_pose", "expression", "transl", "camera", "reprojection_px",
    # per-frame quality (annotate/smplx_quality.py): which joints a landmark saw, depth trust, verdicts
    "observed", "depth_confidence", "reprojection_face", "frame_flags", "frame_ok"))
SMPLX_SCORES = ("smplx.reprojection_px", "smplx.jitter", "smplx.face_px", "smplx.fit_seconds",
                "smplx.bad_frame_share", "smplx.bad_run_s", "smplx.outlier_frames")

STAGES: tuple[Stage, ...] = (
    # -- on the source span (filter actors) --------------------------------------------------
    Stage("filter", "filters", "annotate.person_filter:PersonFilter", pool="curate"),
    Stage("encode", None, "mentor.curate.encode:Encoder", pool="curate"),
    # -- on the encoded clip (annotate actors) -----------------------------------------------
    # the cheap audio checks first (about 0.02 s per clip-second each): a clip they reject
    # (too little speech, a second voice) never pays for landmarks and SMPL-X. They hear the
    # audio as encoded, before the sync correction (at most sync.max_shift_frames off).
    Stage("vad", "annotate.vad", "annotate.vad:VoiceActivity"),
    Stage("diarization", "annotate.diarization", "annotate.diarize:Diarizer"),
    Stage("landmarks", "annotate.landmarks", "annotate.landmarks:HolisticLandmarks",
          reads=(file(VIDEO), record_field("fps", optional=True), array(FILTER_FACE_BOX, optional=True),
                 record_field("crop", optional=True),  # the filter's face track: where the face mesh looks
                 file(AUDIO, optional=True)),  # heard by the sync check's verdict, asked before the body
          writes=(*map(array, LANDMARK_ARRAYS), *map(score, LANDMARK_SCORES), annotation("landmarks"))),
    # sync (it needs the face landmarks), and its correction, so every later stage hears audio
    # in sync with the video; before SMPL-X, so a clip it rejects (a voice the mouth does not
    # follow: the benchmark's two-voice pieces) never pays for the fit. The landmark stage asks
    # its verdict on the face mesh before the pose and hands (build_annotators), so such a clip
    # pays the face mesh only
    Stage("sync", "annotate.sync", "annotate.av_sync:AvSync"),
    Stage("sync_shift", "annotate.sync", "mentor.curate.sync_shift:SyncShift"),
    Stage("smplx", "annotate.smplx", "annotate.smplx_fit:SmplxFitter",
          reads=(array(POSE), array(FACE), array(LEFT_HAND, optional=True), array(RIGHT_HAND, optional=True),
                 record_field("width"), record_field("height")),
          writes=(*map(array, SMPLX_ARRAYS), *map(score, SMPLX_SCORES), annotation("smplx"))),
    Stage("asr", "annotate.asr", "annotate.asr:Transcriber"),
    Stage("audio", "annotate.audio_features", "annotate.audio_features:AudioFeatures"),
    Stage("attributes", "annotate.attributes", "annotate.attributes:PerceivedAttributes",
          on_rejected="annotate.attributes.on_rejected"),
    # face embeddings per clip; `mentor split` clusters them into identities
    Stage("identity", "annotate.attributes", "annotate.identity:FaceIdentity",
          when="annotate.attributes.face_recognition_model"),
)


def with_stage(stage: Stage, after: str | None = None, stages: tuple[Stage, ...] = STAGES) -> tuple[Stage, ...]:
    """`stages` with `stage` added after the one named `after` (None: at the end)."""
    if after is None:
        return (*stages, stage)
    names = [s.name for s in stages]
    if after not in names:
        raise ValueError(f"no stage named {after!r} to add {stage.name!r} after; the stages are {names}")
    i = names.index(after) + 1
    return (*stages[:i], stage, *stages[i:])


def build_annotators(cfg, stages: tuple[Stage, ...], work) -> list:
    """The annotators of `stages` (the enabled ones, in order), each built once; a stage
    with `on_rejected` switched on is wrapped to run on rejected clips too. Loads models:
    call it in the worker that runs them."""
    from mentor.curate.rejected_preview import RejectedPreview

    out = []
    for stage in enabled_stages(stages, cfg):
        annotator = stage.build(cfg, work)
        out.append(RejectedPreview(annotator, cfg) if stage.runs_on_rejected(cfg) else annotator)
    _landmarks_ask_sync(out)
    return out


def _landmarks_ask_sync(annotators: list) -> None:
    """The landmark stage asks the sync stage's verdict on the face mesh before it runs the
    pose and hand models, when sync runs right after it (nothing in between can change the
    face or the audio it judges): a clip sync will reject pays the face mesh only. The rejection
    stays sync's own, given when sync runs."""
    for lm, sync in zip(annotators, annotators[1:]):
        if lm.name == "landmarks" and sync.name == "sync" and hasattr(lm, "sync_verdict") \
                and hasattr(sync, "would_reject"):
            lm.sync_verdict = sync.would_reject


def switches(pool: str = "annotate", stages: tuple[Stage, ...] = STAGES) -> tuple[str, ...]:
    """The config sections that switch the stages of `pool` on and off, each once, in order
    ("annotate.landmarks", ...): what a config turns off to run curation alone."""
    out: list[str] = []
    for s in stages:
        if s.pool == pool and s.section and s.section not in out:
            out.append(s.section)
    return tuple(out)


def all_off_yaml(pool: str = "annotate", stages: tuple[Stage, ...] = STAGES) -> str:
    """A datasets.yaml fragment that switches off every stage of `pool` (tests, benchmarks)."""
    lines, parent = [], None
    for section in switches(pool, stages):
        if section.count(".") != 1:
            raise ValueError(f"all_off_yaml writes 'parent: child' sections only, not {section!r}")
        head, _, key = section.rpartition(".")
        if head != parent:
            lines.append(f"{head}:")
            parent = head
        lines.append(f"  {key}: {{enabled: false}}")
    return "\n".join(lines) + "\n"
