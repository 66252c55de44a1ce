"""A yt-dlp plugin extractor for the tests: videos with ids, served from 127.0.0.1.

yt-dlp's generic extractor (direct links) gives no id, so the behaviours that
hang on ids (the download archive, which skipped an archived id and left
"yt-dlp wrote no media file") stay invisible with it. This extractor answers
``http://127.0.0.1:PORT/watch/ID`` with the file ``ID.mp4`` of the same server,
under the id ``ID``, as a site extractor (YouTube, Bilibili) would.
yt-dlp finds it as a plugin: put ``tests/badinput/ytdlp_plugins`` on sys.path.
"""

from yt_dlp.extractor.common import InfoExtractor


class EvokeLocalIE(InfoExtractor):
    IE_NAME = "evokelocal"
    _VALID_URL = r"https?://127\.0\.0\.1:(?P<port>\d+)/watch/(?P<id>[\w.-]+)"

    def _real_extract(self, url):
        port, video_id = self._match_valid_url(url).group("port", "id")
        return {
            "id": video_id,
            "title": video_id,
            "url": f"http://127.0.0.1:{port}/{video_id}.mp4",
            "ext": "mp4",
        }
