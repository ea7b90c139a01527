"""The curation steps that run no learned model, each callable on one record, no Ray.

The data's path, step by step, and where each step lives:

    datasets.yaml  mentor/config.py            typed config, validated with file:line
    discover       mentor/fetch.py             discover_sources(cfg) -> SourceRecords
    fetch          mentor/fetch.py             fetch_source(src, cfg, out)
    probe          mentor/curate/probe.py      probe_source(src, cfg): streams, duration
    shots          mentor/curate/shots.py      detect_shots, clip_spans -> clip spans
    (one source)   mentor/curate/prepare.py    source_clips: fetch -> probe -> shots -> ClipRecords
    filter         annotate/person_filter.py   track and filter (MediaPipe, silero-vad)
    encode         mentor/curate/encode.py     the H.264 crop and 16 kHz audio of a kept clip
    sync           annotate/av_sync.py         measure the audio offset (lip gap vs voice)
                   mentor/curate/sync_shift.py re-extract the audio shifted by it
    annotate       annotate/*.py               landmarks, SMPL-X, VAD, diarization, ASR, ...
                   mentor/curate/rejected_preview.py  an annotator on a rejected clip's preview
    store          mentor/store/               WebDataset shards + Parquet index

The rule: a step that runs a learned model (a detector, a VAD, a fitter) is an annotator
in annotate/, whether it filters or annotates; a step that only probes, cuts, encodes or
moves media is here. Each is a plain function or a plain class (`__call__(record) ->
record`) with `reads` / `writes` contracts (mentor.contracts); annotate/registry.py lists
every clip step in order, and pipelines/ only runs that list on Ray with its resources.
"""
