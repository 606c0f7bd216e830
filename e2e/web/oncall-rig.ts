import type { Browser, Page } from 'playwright-core';

import { DEV_USERS, type RunningSystem, type SystemOptions } from '../system/system';
import { launchBrowser, newPage, signIn, startLoggedSystem } from './browser';

export interface OncallPeople {
  browser: Browser;
  system: RunningSystem;
  /** Signed in as `admin` (platform-admins). */
  admin: Page;
  /** Signed in as `oncall`, a second member of platform-admins. */
  oncall: Page;
  /** Signed in as `reader` (read tier). */
  reader: Page;
}

/**
 * The whole local system (no agent) with the dev users and a second admin `oncall`, Chromium, and
 * one tab each for admin, oncall and reader, signed in. stop() closes what start() got to, even
 * when start() failed part way.
 */
export class OncallRig {
  private browser: Browser | undefined;
  private system: RunningSystem | undefined;
  private readonly pages: Page[] = [];

  async start(name: string): Promise<OncallPeople> {
    const browser = (this.browser = await launchBrowser());
    const system = (this.system = await startLoggedSystem(name, {
      agent: false,
      users: [
        ...DEV_USERS,
        { subject: 'oncall', email: 'oncall@periscope.local', groups: ['platform-admins'] },
      ],
    }));
    const tab = async (): Promise<Page> => {
      const page = await newPage(browser);
      this.pages.push(page);
      return page;
    };
    const admin = await tab();
    const oncall = await tab();
    const reader = await tab();
    await signIn(admin, system.url, 'admin');
    await signIn(oncall, system.url, 'oncall');
    await signIn(reader, system.url, 'reader');
    return { browser, system, admin, oncall, reader };
  }

  async stop(): Promise<void> {
    for (const p of this.pages) await p.context().close();
    await this.system?.stop();
    await this.browser?.close();
  }
}

export interface SignedIn {
  browser: Browser;
  system: RunningSystem;
  /** One tab signed in as the given user. */
  page: Page;
}

/**
 * The whole local system with `options`, Chromium, and one tab signed in as `subject`. stop()
 * closes what start() got to, even when start() failed part way.
 */
export class SignedInRig {
  private browser: Browser | undefined;
  private system: RunningSystem | undefined;
  private page: Page | undefined;

  async start(name: string, options: SystemOptions, subject = 'admin'): Promise<SignedIn> {
    const browser = (this.browser = await launchBrowser());
    const system = (this.system = await startLoggedSystem(name, options));
    const page = (this.page = await newPage(browser));
    await signIn(page, system.url, subject);
    return { browser, system, page };
  }

  async stop(): Promise<void> {
    await this.page?.context().close();
    await this.system?.stop();
    await this.browser?.close();
  }
}
