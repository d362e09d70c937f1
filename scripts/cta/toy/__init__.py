"""The toy simulation: a small CTA-like array, its air showers and its DL0 file format.

Apart from the pipeline steps because it stands in for what CTA provides (the instrument,
CORSIKA/sim_telarray showers, the DL0 format); ctapipe runs on it unmodified:

* :mod:`cta.toy.instrument`: telescopes, cameras and their layout (ctapipe
  ``SubarrayDescription``);
* :mod:`cta.toy.showers`: gamma and proton showers and their camera images;
* :mod:`cta.toy.dl0`: the DL0 HDF5 format, its writer and the ctapipe ``EventSource``
  that reads it.
"""
