"""The CTA gamma-ray pipeline run as UWS jobs: one module per job step, plus the toy simulation.

Each job step is a module run in its job directory as ``python -P -m cta.<step>`` (the
``script`` line of ``job_definitions/<step>_vot.xml``):

* the ctapipe chain, DL0 -> DL3: :mod:`cta.simulation`, :mod:`cta.calibration`,
  :mod:`cta.reconstruction`, :mod:`cta.irf_production`, :mod:`cta.analysis`;
* the gammapy fast path and DL4 products: :mod:`cta.simulate_dl3`, :mod:`cta.gammapy_maps`,
  :mod:`cta.gammapy_spectra`, :mod:`cta.gammapy_lightcurve`.

Shared by the steps: :mod:`cta.job` (the one job helper: parameters, outputs, progress,
used inputs, errors, all through :mod:`workers.jobside`), :mod:`cta.ctapipe_tool` (ctapipe
commands run unmodified), :mod:`cta.dl3_store` (the GADF DL3 store), :mod:`cta.dl3_writer`
and :mod:`cta.gadf_irf` (DL3 files and IRFs), :mod:`cta.selection` (event cuts).
:mod:`cta.toy` is the project's own simulated instrument and showers, apart from the
pipeline; :mod:`cta.make_models` regenerates the committed models in ``models/``.

Importing this package imports nothing heavy: the science stack is imported by the steps.
"""
