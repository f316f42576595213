/**
 * The one text normalisation every parsed document goes through (issue 7, criterion 3), so
 * that chunk offsets, content hashes and keyword search all see the same characters whatever
 * the source format was.
 */

/** Line and page breaks of every convention: CRLF, CR, form feed, vertical tab, U+2028/2029. */
const LINE_BREAKS = /\r\n|[\r\f\v\u2028\u2029]/g;

/**
 * Control characters other than \t and \n (C0, DEL, C1), and invisible characters that only
 * split words for search: zero-width space, word joiner, BOM/zero-width no-break space, soft
 * hyphen. ZWJ and ZWNJ (U+200C/U+200D) stay: they carry meaning in emoji sequences and in
 * Persian and Indic spelling.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const INVISIBLE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u200B\u2060\uFEFF]/g;

/** No-break and fixed-width spaces, which look like spaces and must match like spaces. */
const SPACE_LOOKALIKES = /[\u00A0\u2000-\u200A\u202F\u205F]/g;

/**
 * `text` normalised: line breaks → LF, control and zero-width characters removed (tab and LF
 * kept), NBSP-like spaces → space, trailing spaces and tabs trimmed on every line, at most two
 * consecutive blank lines, no leading blank lines or trailing whitespace, Unicode NFC.
 */
export function normalizeText(text: string): string {
  return text
    .replace(LINE_BREAKS, '\n')
    .replace(INVISIBLE, '')
    .replace(SPACE_LOOKALIKES, ' ')
    .replace(/[ \t]+$/gm, '')
    .replace(/\n{4,}/g, '\n\n\n')
    .replace(/^\n+/, '')
    .trimEnd()
    .normalize('NFC');
}
