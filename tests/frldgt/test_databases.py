"""The database registry (frldgt_jax/data/databases.py): every entry is whole and read everywhere.

Adding a database is one entry plus its reader (docs/frldgt.md, "Adding a database"): these checks
hold for every entry, so a new one is checked as the three are.
"""
import pytest

from frldgt_jax.data import builders, clips, databases


def test_names_are_unique_and_leave_composite_to_the_composite():
  assert databases.NAMES == ("casme2", "samm", "smic")
  assert len(set(databases.NAMES)) == len(databases.NAMES)
  assert "composite" not in databases.NAMES  # builders.BUILDERS, metrics.scores_by_database
  with pytest.raises(ValueError, match="unknown micro-expression database 'casme3'"):
    databases.get("casme3")


@pytest.mark.parametrize("db", databases.ALL, ids=lambda d: d.name)
def test_each_entry_is_whole(db):
  assert db.fps > 0 and callable(db.reader) and db.instructions
  assert (db.annotation_file is None) == (db.annotation_glob is None) == db.labels_from_folders
  for emotion, (label, label5) in db.labels.items():
    assert emotion == emotion.lower() and -1 <= label < len(databases.CLASS_NAMES)
    assert -1 <= label5 < len(databases.CASME2_CLASS_NAMES)
  # Every name the entry writes is one its pattern reads back, raw and cropped, at each padding.
  for padding in db.frame_paddings or (None,):
    for cropped in (False, True):
      name = db.frame_file(5562, "006", padding, cropped)
      assert clips.frame_number(db.name, name) == 5562, name
  assert clips.frame_number(db.name, db.frame_example) is not None


@pytest.mark.parametrize("db", databases.ALL, ids=lambda d: d.name)
def test_each_entry_has_its_builder(db):
  cls = builders.BUILDERS[db.name]
  assert cls.__name__ == db.builder_class and cls.name == db.builder
  assert cls.__module__ == "frldgt_jax.data.builders"
  assert cls.MANUAL_DOWNLOAD_INSTRUCTIONS == db.instructions
  assert str(cls.VERSION) == "2.0.0"
  assert db.instructions in builders.BUILDERS["composite"].MANUAL_DOWNLOAD_INSTRUCTIONS


def test_the_three_databases_keep_their_facts():
  """The values the builders stored before the registry (TFDS features fps and label)."""
  casme2, samm, smic = databases.ALL
  assert (casme2.fps, samm.fps, smic.fps) == (200, 200, 100)
  assert (casme2.builder, samm.builder, smic.builder) == ("casme2_me", "samm_me", "smic_me")
  assert casme2.labels["repression"] == (0, 2) and casme2.labels["others"] == (-1, 4)
  assert samm.labels["contempt"] == (0, -1) and smic.labels["surprise"] == (2, -1)
  assert clips.expected_frame_name("samm", 7, "006") == "006_00007.jpg (or 4-digit padding)"
  assert clips.expected_frame_name("smic", 7, cropped=True) == "reg_image000007.bmp"
  assert clips.expected_frame_name("casme2", 46) == "img46.jpg"
