"""The status page: a pure model (model), its renderings (render), where they are written
(sinks), what changed since the last publish (changes), webhooks (notify), and the
publish step that ties them together (publish)."""
