"""MTCNN training, stage rnet: RNet, the 24x24 refinement network, on WIDER FACE.

Crops of 12/24/48 pixels labelled by IoU with the faces (negatives < 0.3, part faces 0.4-0.65,
positives >= 0.65) are drawn from each batch of annotated images by the detector's training forward;
losses with the paper's weights and online hard sample mining (:mod:`detkit.models.mtcnn_training`).
The other two networks are frozen. Data: a folder in WIDER FACE's layout (WIDER_train/images/ and
wider_face_split/wider_face_train_bbx_gt.txt), set on the command line:

    python tools/train.py configs/mtcnn/mtcnn_rnet_train_wider_face.py dataloader.root=/data/wider_face

Starting from the pnet run's checkpoint carries the networks trained so far along, so that the last
run's checkpoint holds the whole cascade:

    python tools/train.py configs/mtcnn/mtcnn_rnet_train_wider_face.py dataloader.root=/data/wider_face \\
        train.init_checkpoint=runs/mtcnn_pnet_train_wider_face/model_final.pth
"""

from configs.common.mtcnn import mtcnn_stage_training

_training = mtcnn_stage_training("rnet")
model, dataloader = _training["model"], _training["dataloader"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py: fewer crops per image (same networks).
test_overrides = ["model.train_samples=(8, 4, 4)"]
