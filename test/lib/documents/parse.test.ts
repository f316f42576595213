import { createDeflate } from 'node:zlib';
import { formatOf, type DocumentFormat } from '../../../lib/documents/formats';
import { normalizeText } from '../../../lib/documents/normalize';
import { DocumentParseError, parseDocument, type DocumentParseErrorCode, type ParseLimits } from '../../../lib/documents/parse';
import { zipOf } from '../../harness/zip';
import { onePageObjects, passwordProtectedPdf, pdfFile, pdfStream, textPdf, truncatedPdf } from '../../fixtures/ingest-pdfs';

// Issue 7, criterion 3. PDF, DOCX and HTML are parsed in a child process; every file here is a
// real one (the PDFs of test/fixtures/ingest-pdfs.ts, a ZIP of OOXML parts), and the hostile
// ones must fail only their own document.

const limits: ParseLimits = { timeoutMs: 20_000, maxMemoryMb: 64 };

function parse(bytes: Buffer | string, format: DocumentFormat, name = `doc.${format}`, parseLimits = limits) {
  return parseDocument({ bytes: typeof bytes === 'string' ? Buffer.from(bytes) : bytes, format, name }, parseLimits);
}

/** The code of the DocumentParseError `promise` rejects with (fails the test on success or any other error). */
async function failureOf(promise: Promise<unknown>): Promise<{ code: DocumentParseErrorCode; message: string }> {
  const error: unknown = await promise.then(
    () => {
      throw new Error('expected parsing to fail');
    },
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(DocumentParseError);
  const { code, message, retryable } = error as DocumentParseError;
  expect(retryable).toBe(false);
  return { code, message };
}

// ---------------------------------------------------------------------------------------------
// Builders of real files

/** Two pages of two lines each, titled "Quarterly Report". */
const twoPagePdf = () =>
  textPdf(
    [
      ['Revenue overview', 'Apples sold well in the first quarter.'],
      ['Outlook', 'Bananas are expected to grow next year.'],
    ],
    'Quarterly Report',
  );

/** zlib-compressed `size` bytes of spaces (about 1:230 at level 1), streamed so the test never holds them. */
async function deflatedSpaces(size: number): Promise<Buffer> {
  const deflate = createDeflate({ level: 1 });
  const compressed: Buffer[] = [];
  deflate.on('data', (chunk: Buffer) => compressed.push(chunk));
  const ended = new Promise((resolve) => deflate.on('end', resolve));
  const block = Buffer.alloc(1 << 20, 0x20);
  for (let written = 0; written < size; written += block.length) {
    if (!deflate.write(block)) await new Promise((resolve) => deflate.once('drain', resolve));
  }
  deflate.end();
  await ended;
  return Buffer.concat(compressed);
}

const WORDML = 'http://schemas.openxmlformats.org/wordprocessingml/2006/main';
const RELATIONSHIPS = 'http://schemas.openxmlformats.org/package/2006/relationships';
const OFFICE_RELATIONSHIPS = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';

/** A minimal DOCX (the OOXML parts Word needs) whose body is `bodyXml`, with styles "heading 1" and "heading 2". */
function docx(bodyXml: string): Promise<Buffer> {
  const xml = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>';
  return zipOf({
    '[Content_Types].xml':
      `${xml}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
      '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
      '<Default Extension="xml" ContentType="application/xml"/>' +
      '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>' +
      '<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>' +
      '</Types>',
    '_rels/.rels': `${xml}<Relationships xmlns="${RELATIONSHIPS}"><Relationship Id="rId1" Type="${OFFICE_RELATIONSHIPS}/officeDocument" Target="word/document.xml"/></Relationships>`,
    'word/_rels/document.xml.rels': `${xml}<Relationships xmlns="${RELATIONSHIPS}"><Relationship Id="rId1" Type="${OFFICE_RELATIONSHIPS}/styles" Target="styles.xml"/></Relationships>`,
    'word/styles.xml':
      `${xml}<w:styles xmlns:w="${WORDML}">` +
      '<w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/></w:style>' +
      '<w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/></w:style>' +
      '</w:styles>',
    'word/document.xml': `${xml}<w:document xmlns:w="${WORDML}"><w:body>${bodyXml}</w:body></w:document>`,
  });
}

const paragraph = (text: string, style?: string) =>
  `<w:p>${style ? `<w:pPr><w:pStyle w:val="${style}"/></w:pPr>` : ''}<w:r><w:t xml:space="preserve">${text}</w:t></w:r></w:p>`;

// ---------------------------------------------------------------------------------------------

describe('formatOf', () => {
  test.each<[string, string | undefined, DocumentFormat | null]>([
    ['notes.txt', undefined, 'text'],
    ['server.LOG', undefined, 'text'],
    ['data.csv', undefined, 'text'],
    ['README.md', undefined, 'markdown'],
    ['docs/guide.markdown', undefined, 'markdown'],
    ['page.mdx', undefined, 'markdown'],
    ['index.html', undefined, 'html'],
    ['old.HTM', undefined, 'html'],
    ['book.xhtml', undefined, 'html'],
    ['report.final.pdf', undefined, 'pdf'],
    ['contract.docx', undefined, 'docx'],
    ['src/app.ts', undefined, 'source'],
    ['component.tsx', undefined, 'source'],
    ['main.py', undefined, 'source'],
    ['lib\\windows\\Program.cs', undefined, 'source'],
    ['config.yaml', undefined, 'source'],
    ['package.json', undefined, 'source'],
    ['Dockerfile', undefined, 'source'],
    ['LICENSE', undefined, 'text'],
    // URLs: the path's extension, then the media type; parameters and case do not matter.
    ['https://example.com/files/manual.pdf?download=1#page=2', undefined, 'pdf'],
    ['https://example.com/docs/', 'text/html; charset=utf-8', 'html'],
    ['https://example.com/api/export', 'Application/PDF', 'pdf'],
    ['https://example.com/raw', 'text/plain', 'text'],
    ['https://example.com/readme', 'text/markdown', 'markdown'],
    ['https://example.com/d', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'docx'],
    // A known extension wins over a generic media type.
    ['notes.md', 'text/plain', 'markdown'],
    ['guide.pdf', 'application/octet-stream', 'pdf'],
    // Unsupported → null (the API answers 415).
    ['photo.png', undefined, null],
    ['legacy.doc', undefined, null],
    ['archive.tar.gz', undefined, null],
    ['.bashrc', undefined, null],
    ['https://example.com/blob', 'application/octet-stream', null],
    ['https://example.com/image', 'image/png', null],
    ['noextension', undefined, null],
    ['https://example.com/readme', 'application/octet-stream', 'text'],
  ])('%s (%s) → %s', (name, mediaType, expected) => {
    expect(formatOf(name, mediaType)).toBe(expected);
  });
});

describe('normalizeText', () => {
  test('composes to NFC', () => {
    const decomposed = 'Cafe\u0301 Ångstro\u0308m';
    expect(normalizeText(decomposed)).toBe('Caf\u00e9 \u00c5ngstr\u00f6m');
    expect(normalizeText(decomposed)).toHaveLength('Café Ångström'.length);
  });

  test('turns CRLF, CR and other line breaks into LF', () => {
    expect(normalizeText('one\r\ntwo\rthree\u2028four\ffive')).toBe('one\ntwo\nthree\nfour\nfive');
  });

  test('removes control characters but keeps tabs and newlines', () => {
    expect(normalizeText('a\u0000b\u0007c\u001bd\u007fe\u0085f\u009f\tg\nh')).toBe('abcdef\tg\nh');
  });

  test('removes zero-width characters and soft hyphens, keeps ZWJ emoji sequences', () => {
    expect(normalizeText('\uFEFFzero\u200Bwidth\u2060joined docu\u00ADment')).toBe('zerowidthjoined document');
    expect(normalizeText('family: \u{1F468}\u200D\u{1F469}\u200D\u{1F467}')).toBe('family: \u{1F468}\u200D\u{1F469}\u200D\u{1F467}');
  });

  test('turns NBSP and other fixed spaces into spaces', () => {
    expect(normalizeText('10\u00A0kg and 5\u202Fm\u2009wide')).toBe('10 kg and 5 m wide');
  });

  test('trims trailing spaces per line, keeps indentation, caps blank lines at two', () => {
    expect(normalizeText('\n\n  indented  \t\nnext\u00A0\n\n\n\n\n\nafter\n\n\nend  \n\n')).toBe('  indented\nnext\n\n\nafter\n\n\nend');
  });

  test('is idempotent', () => {
    const once = normalizeText('A\r\n\r\n\r\n\r\n\r\nB\u00A0 \u0301x\u0000');
    expect(normalizeText(once)).toBe(once);
  });
});

describe('parseDocument: text formats (in process)', () => {
  test('text is decoded and normalised; it has no title', async () => {
    const parsed = await parse(Buffer.from('\uFEFFline one  \r\nline two\r\n\r\n\r\n\r\n\r\nCafe\u0301\u0007', 'utf8'), 'text', 'notes.txt');
    expect(parsed).toEqual({ text: 'line one\nline two\n\n\nCafé', title: null, format: 'text' });
  });

  test('markdown keeps its headings; the title is the first # heading outside code fences', async () => {
    const markdown = '```sh\n# not a heading\n```\n\n# Getting started\n\nInstall it.\n\n## Configuration\n\nSet `PORT`.\n';
    const parsed = await parse(markdown, 'markdown', 'README.md');
    expect(parsed.text).toBe(markdown.trimEnd());
    expect(parsed.text).toMatch(/^## Configuration$/m);
    expect(parsed.title).toBe('Getting started');
    expect(parsed.format).toBe('markdown');
  });

  test('markdown front matter title wins', async () => {
    const parsed = await parse('---\ntitle: "Release notes"\n---\n\n# v2.0\n\nFaster.', 'markdown');
    expect(parsed.title).toBe('Release notes');
  });

  test('source keeps its indentation and tabs', async () => {
    const source = 'def main():\n\tif True:\n\t\treturn 1   \n';
    expect(await parse(source, 'source', 'main.py')).toEqual({ text: 'def main():\n\tif True:\n\t\treturn 1', title: null, format: 'source' });
  });

  test('UTF-16 with a byte order mark is decoded', async () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('Grüße aus Köln', 'utf16le')]);
    expect((await parse(utf16, 'text')).text).toBe('Grüße aus Köln');
  });

  test('invalid UTF-8 → not-utf8', async () => {
    const latin1 = Buffer.from('caf\u00e9 cr\u00e8me', 'latin1');
    const failure = await failureOf(parse(latin1, 'text', 'menu.txt'));
    expect(failure.code).toBe('not-utf8');
    expect(failure.message).toContain('"menu.txt" is not valid UTF-8');
    expect((await failureOf(parse(Buffer.from([0x23, 0x20, 0xc3, 0x28]), 'markdown'))).code).toBe('not-utf8');
  });

  test('a NUL byte → binary', async () => {
    const failure = await failureOf(parse(Buffer.from('ELF\u0000\u0001\u0002 text', 'latin1'), 'source', 'a.out.c'));
    expect(failure.code).toBe('binary');
  });

  test('nothing but whitespace and invisible characters → empty', async () => {
    expect((await failureOf(parse(' \r\n\t\u200B\u00A0\n', 'text'))).code).toBe('empty');
  });
});

describe('parseDocument: HTML', () => {
  const page = `<!DOCTYPE html>
<html><head>
  <title>Deploy &amp; Operate</title>
  <style>body { color: red }</style>
  <script>var secret = "tracking";</script>
</head><body>
  <header><a href="/">Home</a> | <a href="/docs">Docs</a></header>
  <nav><ul><li>Menu item</li></ul></nav>
  <main><article>
    <header><h1>Deploying the   service</h1></header>
    <p>Run <code>make deploy</code> &mdash; it takes
       about five&nbsp;minutes.<br>Then check the logs.</p>
    <h2>Requirements</h2>
    <ul><li>Docker <b>24</b></li><li>Node<ul><li>version 20</li></ul></li></ul>
    <ol start="3"><li>third</li><li>fourth</li></ol>
    <table><tr><th>Setting</th><th>Default</th></tr><tr><td>PORT</td><td>8080</td></tr></table>
    <pre>
# a shell comment, not a heading
make deploy</pre>
    <p>#1 priority</p>
    <p># looks like a heading, is a paragraph</p>
    <div hidden>hidden text</div>
    <svg><text>chart label</text></svg>
    <noscript>enable JavaScript</noscript>
    <form><label>Search <input name="q"></label><button>Go</button></form>
  </article></main>
  <aside>Related posts</aside>
  <footer>&copy; Example Corp</footer>
  <script>console.log("late")</script>
</body></html>`;

  test('drops scripts, styles, navigation and page chrome; keeps headings, paragraphs, lists, tables and code', async () => {
    const parsed = await parse(page, 'html', 'deploy.html');
    expect(parsed.format).toBe('html');
    expect(parsed.title).toBe('Deploy & Operate');
    expect(parsed.text).toBe(
      [
        '# Deploying the service',
        '',
        'Run make deploy — it takes about five minutes.',
        'Then check the logs.',
        '',
        '## Requirements',
        '',
        '- Docker 24',
        '- Node',
        '  - version 20',
        '',
        '3. third',
        '4. fourth',
        '',
        'Setting | Default',
        'PORT | 8080',
        '',
        '```',
        '# a shell comment, not a heading',
        'make deploy',
        '```',
        '',
        '#1 priority',
        '',
        '\\# looks like a heading, is a paragraph',
      ].join('\n'),
    );
    for (const dropped of ['secret', 'tracking', 'color', 'Home', 'Menu item', 'hidden text', 'chart label', 'enable JavaScript', 'Search', 'Go', 'Related', 'Example Corp', 'late']) {
      expect(parsed.text).not.toContain(dropped);
    }
  });

  test('the title falls back to the first h1; a declared legacy charset is honoured', async () => {
    const latin1Page = Buffer.from('<html><head><meta charset="windows-1252"></head><body><h2>Intro</h2><h1>Caf\u00e9 menu</h1><p>cr\u00e8me br\u00fbl\u00e9e</p></body></html>', 'latin1');
    const parsed = await parse(latin1Page, 'html', 'menu.html');
    expect(parsed.title).toBe('Café menu');
    expect(parsed.text).toBe('## Intro\n\n# Café menu\n\ncrème brûlée');
  });

  test('a page wrapped in one form (ASP.NET WebForms) keeps its content, not its controls', async () => {
    const page = '<body><form id="form1"><h1>Leave policy</h1><p>Ask your manager.</p><select><option>EN</option></select><input type="submit" value="Send"><button>Print</button></form></body>';
    expect((await parse(page, 'html')).text).toBe('# Leave policy\n\nAsk your manager.');
  });

  test('a page of only scripts and navigation → empty', async () => {
    expect((await failureOf(parse('<nav>Home</nav><script>x()</script>', 'html'))).code).toBe('empty');
  });
});

describe('parseDocument: PDF and DOCX (child process)', () => {
  test('a two-page PDF: each page is a block of text, the title comes from its metadata', async () => {
    const parsed = await parse(await twoPagePdf(), 'pdf', 'report.pdf');
    expect(parsed).toEqual({
      text: 'Revenue overview\nApples sold well in the first quarter.\n\nOutlook\nBananas are expected to grow next year.',
      title: 'Quarterly Report',
      format: 'pdf',
    });
  });

  test('a DOCX keeps its headings as # lines', async () => {
    const bytes = await docx(
      paragraph('Installation guide', 'Heading1') +
        paragraph('Download the installer &amp; run it.') +
        paragraph('Upgrading', 'Heading2') +
        paragraph('Stop the service first.') +
        paragraph('Then replace the binary.'),
    );
    const parsed = await parse(bytes, 'docx', 'guide.docx');
    expect(parsed).toEqual({
      text: '# Installation guide\n\nDownload the installer & run it.\n\n## Upgrading\n\nStop the service first.\n\nThen replace the binary.',
      title: 'Installation guide',
      format: 'docx',
    });
  });

  test('a PDF with no text → empty', async () => {
    const blankPage = pdfFile([...onePageObjects(), pdfStream('', Buffer.from('0 0 1 rg 10 10 50 50 re f'))]);
    const failure = await failureOf(parse(blankPage, 'pdf', 'scan.pdf'));
    expect(failure.code).toBe('empty');
    expect(failure.message).toContain('OCR');
  });
});

describe('parseDocument: hostile files fail only their own document', () => {
  test('a truncated PDF → corrupt', async () => {
    const failure = await failureOf(parse(await truncatedPdf('Half a quarterly report.'), 'pdf', 'truncated.pdf'));
    expect(failure.code).toBe('corrupt');
    expect(failure.message).toContain('"truncated.pdf"');
  });

  test('garbage named .pdf → corrupt', async () => {
    expect((await failureOf(parse(Buffer.from('this is not a PDF at all\n'.repeat(40)), 'pdf'))).code).toBe('corrupt');
  });

  test('garbage named .docx, and a ZIP without a Word document → corrupt', async () => {
    expect((await failureOf(parse(Buffer.from('PK\u0003\u0004 not really a zip'), 'docx'))).code).toBe('corrupt');
    expect((await failureOf(parse(await zipOf({ 'hello.txt': 'hi' }), 'docx'))).code).toBe('corrupt');
  });

  test('a password-protected PDF → encrypted; one encrypted with an empty user password opens', async () => {
    const failure = await failureOf(parse(await passwordProtectedPdf('Salary table'), 'pdf', 'salaries.pdf'));
    expect(failure.code).toBe('encrypted');
    expect(failure.message).toMatch(/"salaries\.pdf".*password/);
    // Same construction, no user password: readers decrypt it silently, so must we (and this
    // shows the content really is encrypted, not just flagged).
    expect((await parse(await passwordProtectedPdf('Opening hours', ''), 'pdf')).text).toBe('Opening hours');
  });

  test('a DOCX whose XML exhausts the heap → memory, and the next document parses', async () => {
    // 60,000 tiny paragraphs: a 10 kB ZIP whose DOM outgrows a 64 MB heap in mammoth.
    const bomb = await docx(paragraph('x').repeat(60_000));
    expect(bomb.length).toBeLessThan(100_000);
    const failure = await failureOf(parse(bomb, 'docx', 'bomb.docx'));
    expect(['memory', 'timeout']).toContain(failure.code);
    expect(failure.message).toContain('"bomb.docx"');
    expect((await parse(await twoPagePdf(), 'pdf')).title).toBe('Quarterly Report');
  });

  test('a PDF whose content stream inflates to 320 MB → memory (RSS watchdog), and the next document parses', async () => {
    // The decoded stream lives in ArrayBuffers outside the V8 heap, so --max-old-space-size
    // does not stop it: the watchdog does.
    const bomb = pdfFile([...onePageObjects(), pdfStream('/Filter /FlateDecode ', await deflatedSpaces(320 << 20))]);
    expect(bomb.length).toBeLessThan(2 << 20);
    const failure = await failureOf(parse(bomb, 'pdf', 'inflate.pdf'));
    expect(failure.code).toBe('memory');
    expect(failure.message).toMatch(/^Parsing "inflate\.pdf" needed more than \d+ MB of memory \(reached \d+ MB\)/);
    expect((await parse('still alive', 'text')).text).toBe('still alive');
    expect((await parse(await twoPagePdf(), 'pdf')).title).toBe('Quarterly Report');
  });

  test('a parse that outlives its timeout → timeout', async () => {
    const failure = await failureOf(parse(await twoPagePdf(), 'pdf', 'slow.pdf', { timeoutMs: 50, maxMemoryMb: 64 }));
    expect(failure).toEqual({ code: 'timeout', message: 'Parsing "slow.pdf" took longer than 0.05 s and was stopped.' });
  });

  test('an abort signal kills the child and rejects with its reason', async () => {
    const controller = new AbortController();
    const parsing = parseDocument({ bytes: await twoPagePdf(), format: 'pdf', name: 'a.pdf' }, limits, { signal: controller.signal });
    controller.abort(new Error('activity cancelled'));
    await expect(parsing).rejects.toThrow('activity cancelled');
  });

  test('nonsensical limits are a programming error, not a document error', async () => {
    await expect(parse('x', 'text', 'x.txt', { timeoutMs: 0, maxMemoryMb: 64 })).rejects.toBeInstanceOf(RangeError);
  });
});
