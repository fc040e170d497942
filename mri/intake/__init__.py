"""What the web runs on every upload, without TensorFlow: decoding (JPEG, PNG, DICOM), the size
limits, structure and content checks, burnt-in text, colour evidence and the MRI sequence."""
