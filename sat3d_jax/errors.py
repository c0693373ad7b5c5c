"""The error a SAT3D user can cause: bad input from outside the project.

Every reader of outside data (network pickles, latent files, photos, descriptor files, config
values) raises `InputError` (or a subclass) with a message naming the file or field and what is
wrong. Entry points turn it into one line on stderr and exit status 2; any other exception is a
bug and keeps its traceback.
"""


class InputError(ValueError):
  """Input that cannot be used; the message names it and says what is wrong."""


class UnknownNameError(InputError, KeyError):
  """A name (an attribute, a descriptor group) the model or file does not have; a KeyError too,
  for callers that look names up."""

  def __str__(self) -> str:  # KeyError would quote the message
    return str(self.args[0]) if self.args else ""
