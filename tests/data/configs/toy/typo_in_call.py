from config_toys import ToyBackbone

from detkit.config import L

model = L(ToyBackbone)(
    deptth=3,
)
