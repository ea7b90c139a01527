"""Ray graphs and their resources, nothing else: which pool runs which stages, with how
many actors, threads, CPUs and GPUs, and how rows travel between them.

- curation.py: `mentor build` (sources -> prepare tasks -> curate pool -> annotate pool ->
  the driver's store writer);
- reannotate.py: `mentor annotate` (a finished store's clips -> annotate pool -> new parts);
- stages.py: the rows and the threaded actor that runs a pool's steps on each clip;
- train.py: Ray Train launch of the trainers.

The steps themselves are plain code callable on one record without Ray: mentor/curate
(probe, shots, encode, sync shift, ...) and annotate/ (the model-backed steps), listed in
order in annotate/registry.py.
"""
