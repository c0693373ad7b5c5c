"""FRL-DGT, leave-one-subject-out on SAMM alone (3 composite classes).

  python launch/sweep.py --config configs/frldgt_samm.py             # prepared data
  python launch/sweep.py --config configs/frldgt_samm.py:synthetic   # generated corpus

The real data must be prepared first (python launch/prepare_data.py --dataset samm ...). Every
hyperparameter and variant is configs/frldgt_composite.py's; only the dataset differs.
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("frldgt_composite.py", arg)
  c.name = "frldgt_samm"
  c.data.dataset = "samm"
  c.lock()
  return c
