"""Reading the Crypto Lake layout from a local folder, `s3://` and `synthetic://`."""
