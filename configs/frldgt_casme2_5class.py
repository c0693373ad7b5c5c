"""FRL-DGT, leave-one-subject-out on CASME II with its 5 classes (happiness, disgust, repression,
surprise, others).

  python launch/sweep.py --config configs/frldgt_casme2_5class.py             # prepared data
  python launch/sweep.py --config configs/frldgt_casme2_5class.py:synthetic   # generated corpus

The real data must be prepared first (python launch/prepare_data.py --dataset casme2 ...). Every
hyperparameter and variant is configs/frldgt_composite.py's; the dataset and labels differ.
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("frldgt_composite.py", arg)
  c.name = "frldgt_casme2_5class"
  c.data.dataset = "casme2"
  c.data.labels = "label5"
  c.data.class_names = ("happiness", "disgust", "repression", "surprise", "others")
  c.model.num_classes = 5
  c.lock()
  return c
