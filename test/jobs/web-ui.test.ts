import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Member, TestApp } from '../harness';
import { closeBrowser, launchBrowser, openPage, saveScreenshot } from '../harness/browser';
import { deleteProjectAndWait, startJobsSuite, type JobsSuite } from './job-helpers';

/**
 * Operators find a job's workflow in the Temporal Web UI served by the dev server (the UI that
 * ships with the pinned Temporal CLI): they filter the namespace's workflows by our search
 * attributes, open the workflow and read its memo title and summary.
 *
 * Selectors are the UI's own `data-testid`s and ARIA roles/names, never CSS classes or layout.
 */

/** Visibility (the list) is eventually consistent: how long a new workflow may take to appear. */
const VISIBILITY_DEADLINE_MS = 60_000;

/**
 * Types a visibility query into the list page's raw-query box and submits it, as an operator
 * does; waits until the page's URL carries it (the UI then lists that query's results).
 */
async function applyQuery(page: Page, query: string): Promise<void> {
  const input = page.getByTestId('workflow-manual-search-input');
  const toggle = page.getByTestId('toggle-manual-query'); // the `</>` button: show/hide the raw query
  await toggle.waitFor();
  if (!(await input.isVisible())) await toggle.click();
  await input.fill(query);
  await input.press('Enter');
  await page.waitForURL((url) => url.searchParams.get('query') === query);
}

/**
 * The Workflow IDs of the rows the list shows, once they satisfy `done`. Between looks the page
 * is reloaded (its URL keeps the query), since the list does not refresh itself.
 */
async function waitForRows(page: Page, done: (workflowIds: string[]) => boolean): Promise<string[]> {
  const rows = page.getByTestId('workflows-summary-configurable-table-row');
  const deadline = Date.now() + VISIBILITY_DEADLINE_MS;
  for (;;) {
    // Give a slow render some time to show rows (a query may rightly list none).
    await rows.first().waitFor({ timeout: 3_000 }).catch(() => undefined);
    const ids = (await rows.getByRole('link', { name: /^deleteProject-/ }).allInnerTexts()).map((text) => text.trim());
    if (done(ids)) return ids;
    if (Date.now() > deadline) return ids; // the caller's expect() reports what was shown
    await page.reload();
  }
}

describe('Temporal Web UI (operators)', () => {
  let suite: JobsSuite | undefined;
  let t: TestApp;
  let admin: Member;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    suite = await startJobsSuite('operator');
    ({ t, admin } = suite);
    browser = await launchBrowser();
    ({ context, page } = await openPage(browser));
  });

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    await closeBrowser(browser);
    await suite?.stop();
  });

  it('filters the workflows by ProjectId and shows the deletion workflow with its memo title and summary', async () => {
    const uiUrl = process.env.TEMPORAL_UI_URL;
    if (!uiUrl) throw new Error('TEMPORAL_UI_URL is not set: run the tests through jest (global-setup starts the dev server).');

    const { projectId, job } = await deleteProjectAndWait(t, admin, 'doomed');
    const { job: sibling } = await deleteProjectAndWait(t, admin, 'sibling');
    expect(job.workflowId).toBe(`deleteProject-${job.id}`);
    expect(job.title).toMatch(/^Delete project “doomed-/);

    try {
      await page.goto(`${uiUrl}/namespaces/default/workflows`);
      await page.getByTestId('toggle-manual-query').waitFor();

      // By tenant first: both of the tenant's deletions are listed (and visibility has caught up)…
      await applyQuery(page, `TenantId="${admin.tenantId}"`);
      const tenantRows = await waitForRows(page, (ids) => ids.length === 2 && ids.includes(job.workflowId) && ids.includes(sibling.workflowId));
      expect(tenantRows.sort()).toEqual([job.workflowId, sibling.workflowId].sort());

      // …then by project: only that project's deletion remains.
      await applyQuery(page, `ProjectId="${projectId}"`);
      const projectRows = await waitForRows(page, (ids) => ids.length === 1 && ids[0] === job.workflowId);
      expect(projectRows).toEqual([job.workflowId]);

      // Open it: the workflow page, its memo and its summary.
      await page.getByTestId('workflows-summary-configurable-table-row').getByRole('link', { name: job.workflowId, exact: true }).click();
      const heading = page.getByTestId('workflow-id-heading');
      await heading.waitFor({ timeout: 30_000 });
      expect((await heading.innerText()).replace(/\s+/g, '')).toBe(job.workflowId);

      await page.getByTestId('memo-tab').click();
      const memo = page.getByRole('textbox', { name: 'Memo' }); // the read-only JSON viewer of the Memo tab
      await memo.getByText(job.title).waitFor({ timeout: 30_000 });
      expect(JSON.parse(await memo.innerText())).toEqual({ fields: { title: job.title } });

      // staticSummary = title: the User Metadata tab renders it (as markdown) in an iframe.
      await page.getByTestId('user-metadata-tab').click();
      const summary = page.frameLocator('#user-metadata-summary').getByText(job.title);
      await summary.waitFor({ timeout: 30_000 });
      expect((await summary.innerText()).trim()).toBe(job.title);
    } catch (error) {
      const shot = await saveScreenshot(page, `ui-failure-${Date.now()}`);
      if (shot) console.error(`the Web UI as the failure left it: ${shot} (${page.url()})`);
      throw error;
    }
  }, 180_000);
});
