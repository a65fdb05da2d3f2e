"""Model file formats. Import the module you need (nothing is loaded at package import):

- ``onnx_loader.load_onnx`` (``.onnx``, ``.onnx.gz``) and ``onnx_ops`` (its affine constant ops)
- ``onnx_export.save_onnx`` (dynamic batch dim, optional metadata)
- ``keras_loader.load_keras_h5`` (Keras HDF5 through h5py)
- ``torch_loader.load_torch`` / ``save_torch`` (TorchScript, state dict + architecture, trusted pickles)
- ``inflate`` (reading ``.gz`` files and checking zip archives under a size cap, ``CERTPRUNE_MAX_INFLATE``)

``certprune.network.load_model`` picks the loader from the file suffix.
"""
