"""Qt parts of the restore widget that napari and magicgui do not provide as needed.

:class:`LayerComboBox` keeps its layer through a rename; :func:`scroll_content`
lets the dock be shorter than the widget.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox


class LayerComboBox(ComboBox):
    """A combo box of layers that keeps the chosen layer when it is renamed.

    napari calls ``reset_choices`` when a layer is renamed, and magicgui matches
    choices by their text: the renamed choice counts as a new one and the combo
    falls back to its first item (the null entry). This one puts the same layer
    object back while it is still a choice, without a ``changed`` in between (a
    passing None would drop the hints a sample's image set).
    """

    def reset_choices(self, *_: Any) -> None:
        before = self.value
        with self.changed.blocked():
            super().reset_choices()
            if (before is not None and self.value is not before
                    and any(choice is before for choice in self.choices)):
                self.value = before
        if self.value is not before:
            self.changed.emit(self.value)
