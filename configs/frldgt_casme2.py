"""FRL-DGT, leave-one-subject-out on CASME II alone (3 composite classes).

  python launch/sweep.py --config configs/frldgt_casme2.py             # prepared data
  python launch/sweep.py --config configs/frldgt_casme2.py:synthetic   # generated corpus

The real data must be prepared first (python launch/prepare_data.py --dataset casme2 ...). Every
hyperparameter and variant is configs/frldgt_composite.py's; only the dataset differs.
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("frldgt_composite.py", arg)
  c.name = "frldgt_casme2"
  c.data.dataset = "casme2"
  c.data.corpus.databases = ("casme2",)  # the generated corpus: CASME II's clips only
  c.lock()
  return c
