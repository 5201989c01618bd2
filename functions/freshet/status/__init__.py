"""The status page: a pure model (model), its renderings (render), what changed since the
last publish (changes), webhooks (notify), and the publish step that ties them together
(publish); the files go to Cloud Storage or a folder through freshet.gcp.storage."""
