"""Study drivers: experiments built from the engine (train, predict, evaluate), the analyzer and
the reports. They sit above ``engine`` and ``reports`` and are called by ``wilddet experiment``.

- ``studies.common``: resumable shared steps (rate file, training run, scoring, figures).
- ``studies.csm_grid``: the concurrent-softmax 2×2 grid (``run_csm_grid``).
- ``studies.samplers``: the sampler study (``run_sampler_study``).
"""
