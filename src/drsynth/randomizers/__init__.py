"""The randomizers, one module each (subject, pose, camera, lighting, sky, sensor, occluders,
materials, subject_texture). Each turns its config and a generator into its part of the scene spec; `drsynth.describe`
runs them in order for one image."""
