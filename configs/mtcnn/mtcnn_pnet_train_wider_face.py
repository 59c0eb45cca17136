"""MTCNN training, stage pnet: PNet, the 12x12 proposal network, on WIDER FACE.

Crops of 12/24/48 pixels labelled by IoU with the faces (negatives < 0.3, part faces 0.4-0.65,
positives >= 0.65) are drawn from each batch of annotated images by the detector's training forward;
losses with the paper's weights and online hard sample mining (:mod:`detkit.models.mtcnn_training`).
The other two networks are frozen. Data: a folder in WIDER FACE's layout (WIDER_train/images/ and
wider_face_split/wider_face_train_bbx_gt.txt), set on the command line:

    python tools/train.py configs/mtcnn/mtcnn_pnet_train_wider_face.py dataloader.root=/data/wider_face
"""

from configs.common.mtcnn import mtcnn_stage_training

_training = mtcnn_stage_training("pnet")
model, dataloader = _training["model"], _training["dataloader"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py: fewer crops per image (same networks).
test_overrides = ["model.train_samples=(8, 4, 4)"]
