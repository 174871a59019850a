"""Stories: deciding which items report the same event (fingerprints, similarity, the window index)."""
