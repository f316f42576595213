import { Console } from 'node:console';
import mammoth from 'mammoth';
import { htmlToMarkdown } from './html';
import type { DocumentParseErrorCode } from './parse';

/**
 * The child process that parses one untrusted document (issue 7, criterion 3), started by
 * parse.ts with `--max-old-space-size` and watched by it (wall clock, RSS). A parser that hangs,
 * explodes or crashes takes only this process down.
 *
 *   argv:   <entry> <format>          format: pdf | docx | html
 *   stdin:  the document's bytes (HTML already decoded to UTF-8 by the parent)
 *   stdout: one JSON `WorkerReply`; exit code 0 on success, 1 on a parse error
 *
 * Whatever the parsers print (pdf.js warns through console.log) goes to stderr, so stdout
 * carries nothing but the reply.
 */

export type WorkerFormat = 'pdf' | 'docx' | 'html';

export type WorkerReply =
  | { ok: true; text: string; title: string | null }
  | { ok: false; code: DocumentParseErrorCode; message: string };

/** A failure this worker has classified; anything else thrown by a parser is reported as corrupt input. */
class ClassifiedFailure extends Error {
  constructor(
    readonly code: DocumentParseErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface Extracted {
  text: string;
  title: string | null;
}

/**
 * The part of pdf.js's PDFDocumentProxy used here. unpdf's typings import pdf.js's types by
 * extension-less relative paths, which do not resolve under `moduleResolution: nodenext`, so
 * the real type arrives unresolved.
 */
interface PdfDocumentProxy {
  destroy(): Promise<void>;
}

async function extractPdf(bytes: Buffer): Promise<Extracted> {
  // unpdf is ESM-first; the dynamic import works from CommonJS whether compiled by tsc or tsx.
  const { getDocumentProxy, extractText, getMeta } = await import('unpdf');
  let pdf: PdfDocumentProxy;
  try {
    pdf = (await getDocumentProxy(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
      verbosity: 0, // errors only
      isEvalSupported: false, // never compile code taken from the file (fonts)
      disableFontFace: true,
      useSystemFonts: false,
    })) as PdfDocumentProxy;
  } catch (err) {
    throw classifyPdfError(err);
  }
  try {
    const { text: pages } = await extractText(pdf, { mergePages: false });
    const { info } = await getMeta(pdf);
    const title: unknown = info.Title;
    return {
      // Each page is its own block of text: a blank line between pages lets the chunker split there.
      text: pages.map((page) => page.trim()).filter((page) => page !== '').join('\n\n'),
      title: typeof title === 'string' && title.trim() !== '' ? title.trim() : null,
    };
  } catch (err) {
    throw classifyPdfError(err);
  } finally {
    await pdf.destroy();
  }
}

/** pdf.js names its exceptions; a PasswordException is an encrypted file, anything else a damaged one. */
function classifyPdfError(err: unknown): ClassifiedFailure {
  const name = err instanceof Error ? err.name : '';
  const detail = err instanceof Error ? err.message : String(err);
  if (name === 'PasswordException') {
    return new ClassifiedFailure('encrypted', 'The PDF is encrypted with a password; it cannot be read without it.');
  }
  return new ClassifiedFailure('corrupt', `The file could not be read as a PDF (${detail}).`);
}

/** The start of an OLE compound file: Word 97–2003 documents, and password-protected OOXML files. */
const OLE_SIGNATURE = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);
/** The stream name an encrypted OOXML package is stored under inside its OLE container. */
const ENCRYPTED_PACKAGE_STREAM = Buffer.from('EncryptedPackage', 'utf16le');

async function extractDocx(bytes: Buffer): Promise<Extracted> {
  if (bytes.subarray(0, OLE_SIGNATURE.length).equals(OLE_SIGNATURE)) {
    if (bytes.includes(ENCRYPTED_PACKAGE_STREAM)) {
      throw new ClassifiedFailure('encrypted', 'The DOCX file is encrypted with a password; it cannot be read without it.');
    }
    throw new ClassifiedFailure('corrupt', 'The file is a Word 97–2003 (.doc) document, not a .docx; save it as .docx and upload it again.');
  }
  let html: string;
  try {
    const converted = await mammoth.convertToHtml(
      { buffer: bytes },
      {
        // Ahead of mammoth's defaults (Heading 1–6 → h1–h6): a Title paragraph is the top heading too.
        styleMap: ["p[style-name='Title'] => h1:fresh", "p[style-name='Subtitle'] => h2:fresh"],
        // Images carry no text: skip reading and base64-encoding them.
        convertImage: mammoth.images.imgElement(() => Promise.resolve({ src: '' })),
        // Never follow a document's links to files on this machine.
        externalFileAccess: false,
        ignoreEmptyParagraphs: true,
      },
    );
    html = converted.value;
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ClassifiedFailure('corrupt', `The file could not be read as a DOCX document (${detail}).`);
  }
  return htmlToMarkdown(html);
}

async function extract(format: WorkerFormat, bytes: Buffer): Promise<Extracted> {
  switch (format) {
    case 'pdf':
      return extractPdf(bytes);
    case 'docx':
      return extractDocx(bytes);
    case 'html':
      return htmlToMarkdown(bytes.toString('utf8'));
  }
}

function isWorkerFormat(value: string | undefined): value is WorkerFormat {
  return value === 'pdf' || value === 'docx' || value === 'html';
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function reply(message: WorkerReply): void {
  process.stdout.write(JSON.stringify(message), () => process.exit(message.ok ? 0 : 1));
}

async function main(): Promise<void> {
  globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });
  const format = process.argv[2];
  if (!isWorkerFormat(format)) {
    reply({ ok: false, code: 'crashed', message: `The parse worker was started for an unknown format "${String(format)}".` });
    return;
  }
  try {
    const bytes = await readStdin();
    const { text, title } = await extract(format, bytes);
    reply({ ok: true, text, title });
  } catch (err) {
    if (err instanceof ClassifiedFailure) {
      reply({ ok: false, code: err.code, message: err.message });
    } else {
      const detail = err instanceof Error ? err.message : String(err);
      reply({ ok: false, code: 'corrupt', message: `The ${format.toUpperCase()} parser failed on this file (${detail}).` });
    }
  }
}

if (require.main === module) void main();
