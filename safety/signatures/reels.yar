rule Reels_Disguised_Markup
{
  meta:
    description = "HTML, SVG, XML or PHP where a video is expected (stored XSS through the media origin)"
  strings:
    $html = "<html" nocase
    $doctype = "<!doctype" nocase
    $script = "<script" nocase
    $svg = "<svg" nocase
    $php = "<?php" nocase
    $xml = "<?xml" nocase
  condition:
    $html in (0..1024) or $doctype in (0..1024) or $script in (0..1024) or $svg in (0..1024) or $php in (0..1024) or $xml at 0
}
