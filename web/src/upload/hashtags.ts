// What the server will make of the hashtags field (reels/text.py split_hashtags and
// clean_hashtag), so the form can say before the upload which tags are dropped or
// split instead of the server doing it without a word. The rule mirrored: a tag is
// letters, marks, digits and _; whitespace, '#', punctuation and symbols (emoji
// included) separate tags; default-ignorable characters (VS16, joiners...) are
// removed; a word-internal mark (· ・ ׳ ״ ་) is kept only between two letters. This is
// advice: the server still decides (and refuses what it refuses, with its reason).

const HASH_SIGNS = /[#\uff03]/u;
const WORD = /^[\p{L}\p{M}\p{N}_]$/u;
const LETTER = /^[\p{L}\p{N}_]$/u;
const IGNORABLE = /^\p{Default_Ignorable_Code_Point}$/u;
const INNER = new Set(["\u00b7", "\u30fb", "\u05f3", "\u05f4", "\u0f0b"]);

/** The tags the server reads in one piece of text with no '#' or whitespace in it. */
export function tagsOf(piece: string): string[] {
  const chars = Array.from(piece.normalize("NFC")).filter((ch) => !IGNORABLE.test(ch));
  const tags: string[] = [];
  let current = "";
  chars.forEach((ch, i) => {
    if (WORD.test(ch)) {
      if (current || !/^\p{M}$/u.test(ch)) current += ch; // a mark needs a base
      return;
    }
    const next = chars[i + 1];
    if (INNER.has(ch) && current && next !== undefined && LETTER.test(next)) {
      current += ch;
      return;
    }
    if (current) tags.push(current);
    current = "";
  });
  if (current) tags.push(current);
  return tags;
}

/** One note per typed tag the server will drop or split, in typed order, e.g.
 * "#🔥 is not a hashtag: hashtags are letters, digits and _ (it is left out)." */
export function hashtagNotes(raw: string): string[] {
  const notes: string[] = [];
  const seen = new Set<string>();
  for (const word of raw.split(/[\s,，、]+/u)) {
    for (const part of word.split(HASH_SIGNS)) {
      if (part === "" || seen.has(part)) continue;
      const visible = Array.from(part).filter((ch) => !IGNORABLE.test(ch)).join("");
      if (visible === "") continue; // nothing but ignorables: dropped like a bare '#'
      seen.add(part);
      const tags = tagsOf(part);
      if (tags.length === 0) {
        notes.push(`#${part} is not a hashtag: hashtags are letters, digits and _ (it is left out).`);
      } else if (tags.length > 1 || tags[0] !== visible.normalize("NFC")) {
        const becomes = tags.map((t) => `#${t}`).join(" ");
        notes.push(`#${part} becomes ${becomes}: punctuation and emoji end a hashtag.`);
      }
    }
  }
  return notes;
}
