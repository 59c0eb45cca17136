"""MTCNN with facenet-pytorch's weights (fetched from its PyPI wheel, verified, converted, cached).

    python tools/infer.py configs/demo/mtcnn_facenet_pretrained.py none photo.jpg --out runs/faces
"""

from detkit.config import L
from detkit.models.convert.mtcnn_facenet import mtcnn_facenet

model = L(mtcnn_facenet)()

# The model builds with its weights loaded: detkit.load("mtcnn_facenet_pretrained") returns it.
pretrained = True
