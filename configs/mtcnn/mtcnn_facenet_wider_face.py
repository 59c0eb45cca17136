"""MTCNN with facenet-pytorch's weights and settings, for WIDER FACE (one class, "face").

The weights: ``python tools/fetch_weights.py mtcnn`` prints the converted checkpoint's path
(:func:`detkit.models.convert.mtcnn_facenet.mtcnn_facenet_weights`). Data: WIDER FACE's
``wider_face_split/wider_face_{train,val}_bbx_gt.txt`` read by :mod:`detkit.data.wider_face`;
evaluation by :func:`detkit.evaluation.face_ap.face_ap`. Training draws per-stage crops from the
annotated images in the detector's training-mode forward (:mod:`detkit.models.mtcnn_training`).
"""

from configs.common.mtcnn import mtcnn

model = mtcnn(min_face_size=20.0)

# Shrinks the config for tests/test_configs.py: fewer samples per image (same networks).
test_overrides = [
    "model.train_samples=(8, 4, 4)",
]
