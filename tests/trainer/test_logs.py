"""The run log's closing summary (launch/trainer/logs.py)."""
from launch.trainer import logs


def test_each_training_stage_is_summarised_on_its_own(tmp_path):
  log = logs.RunLog(tmp_path, total_steps=8, tensorboard=False)
  for step, loss, stage in ((2, 0.0105, 1), (4, 0.0102, 1), (6, 1.10, 2), (8, 0.90, 2)):
    log.scalars(step, {"loss": loss, "stage": stage})
  log.scalars(8, {"loss": 0.5}, prefix="eval")
  lines = log.loss_summary()
  assert lines == [
      "train loss, stage 1 (mean over each logged interval): 0.0105 at step 2 -> 0.0102 at "
      "step 4 (-2.9%)",
      "train loss, stage 2 (mean over each logged interval): 1.1 at step 6 -> 0.9 at step 8 "
      "(-18.2%)",
      "eval/loss: 0.5 at step 8"]


def test_a_task_without_stages_gets_one_line_and_a_mixed_interval_is_left_out(tmp_path):
  log = logs.RunLog(tmp_path, total_steps=4, tensorboard=False)
  log.scalars(2, {"loss": 2.0})
  log.scalars(4, {"loss": 1.0})
  assert log.loss_summary() == [
      "train loss (mean over each logged interval): 2 at step 2 -> 1 at step 4 (-50.0%)"]
  staged = logs.RunLog(tmp_path / "staged", total_steps=4, tensorboard=False)
  staged.scalars(2, {"loss": 0.01, "stage": 1})
  staged.scalars(4, {"loss": 0.6, "stage": 1.5})  # half stage 1, half stage 2
  assert staged.loss_summary() == [
      "train loss, stage 1 (mean over each logged interval): 0.01 at step 2"]
