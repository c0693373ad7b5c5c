"""Spotting, leave-one-subject-out on SAMM Long Videos (200 fps; every 7th frame).

  python launch/spot_sweep.py --config configs/spotting_samm_lv.py:synthetic --workdir W
  python launch/spot_sweep.py --config configs/spotting_samm_lv.py --workdir W   # as it ships

Every hyperparameter and variant is configs/spotting_casme2_lv.py's; only the dataset differs
(':synthetic': the generated corpus of python launch/make_synthetic.py --long --out
out/long_corpus).
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("spotting_casme2_lv.py", arg)
  if arg == "":
    c.name = "spotting_samm_lv"
    c.data.dataset = "samm_lv"
    c.data.root = "data/samm_lv"
  elif arg == "synthetic":
    c.name = "spotting_samm_lv_synthetic"
    c.data.dataset = "samm_lv"
    c.data.root = "out/long_corpus/samm_lv"
  c.lock()
  return c
