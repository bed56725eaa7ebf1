// Every command the webview may call (see src-tauri/commands.rs) and the core's event
// stream, typed with the bindings generated from rohimaya-core. Nothing else in the UI
// calls `invoke` or `listen` directly.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type { AboutView } from '../bindings/AboutView';
import type { AlertFollowUp } from '../bindings/AlertFollowUp';
import type { AppPrefs } from '../bindings/AppPrefs';
import type { BackendStatus } from '../bindings/BackendStatus';
import type { Book } from '../bindings/Book';
import type { DownloadChoice } from '../bindings/DownloadChoice';
import type { DownloadItem } from '../bindings/DownloadItem';
import type { EnqueueReport } from '../bindings/EnqueueReport';
import type { LibraryStats } from '../bindings/LibraryStats';
import type { PlaybackView } from '../bindings/PlaybackView';
import type { RemoveReport } from '../bindings/RemoveReport';
import type { ErrorView } from '../bindings/ErrorView';
import type { Event as CoreEvent } from '../bindings/Event';
import type { JobAction } from '../bindings/JobAction';
import type { JobOptions } from '../bindings/JobOptions';
import type { JobView } from '../bindings/JobView';
import type { QueueItem } from '../bindings/QueueItem';
import type { SessionView } from '../bindings/SessionView';
import type { SignUpView } from '../bindings/SignUpView';
import type { SyncReport } from '../bindings/SyncReport';
import type { TransferAction } from '../bindings/TransferAction';
import type { UploadOffer } from '../bindings/UploadOffer';
import type { Activity } from '../bindings/Activity';
import type { WatchFolderRequest } from '../bindings/WatchFolderRequest';
import type { WatchedFolder } from '../bindings/WatchedFolder';

/** The webview event that carries every core event (src-tauri/forward.rs). */
export const CORE_EVENT = 'core-event';
/** Where to go after a notification's button was pressed (src-tauri/alert_actions.rs). */
export const ALERT_FOLLOW_UP = 'alert-follow-up';

/** A failed command: the core's stable code and its words for the user. */
export class CommandError extends Error {
  readonly code: string;
  constructor(view: ErrorView) {
    super(view.message);
    this.code = view.code;
  }
}

function isErrorView(e: unknown): e is ErrorView {
  return typeof e === 'object' && e !== null && 'code' in e && 'message' in e;
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    if (isErrorView(e)) throw new CommandError(e);
    throw new CommandError({ code: 'internal', message: String(e) });
  }
}

export const backendStatus = (): Promise<BackendStatus> => call('backend_status');
export const session = (): Promise<SessionView> => call('session');
export const signIn = (email: string, password: string): Promise<SessionView> =>
  call('sign_in', { email, password });
export const signUp = (email: string, password: string): Promise<SignUpView> =>
  call('sign_up', { email, password });
export const sendEmailCode = (email: string): Promise<void> => call('send_email_code', { email });
export const signInWithCode = (email: string, code: string): Promise<SessionView> =>
  call('sign_in_with_code', { email, code });
export const signInWithBrowser = (provider: string): Promise<SessionView> =>
  call('sign_in_with_browser', { provider });
export const cancelBrowserSignIn = (): Promise<void> => call('cancel_browser_sign_in');
export const signOut = (): Promise<SessionView> => call('sign_out');
export const uploadFiles = (
  paths: string[],
  options: JobOptions,
  force = false,
): Promise<UploadOffer[]> => call('upload_files', { paths, options, force });
export const transfers = (): Promise<QueueItem[]> => call('transfers');
export const transferAction = (id: number, action: TransferAction): Promise<void> =>
  call('transfer_action', { id, action });
export const pauseAll = (paused: boolean): Promise<void> => call('pause_all', { paused });
export const transfersPaused = (): Promise<boolean> => call('transfers_paused');
export const jobs = (): Promise<JobView[]> => call('jobs');
export const jobAction = (id: string, action: JobAction): Promise<void> =>
  call('job_action', { id, action });

export const prefs = (): Promise<AppPrefs> => call('prefs');
export const setPrefs = (prefs: AppPrefs): Promise<void> => call('set_prefs', { prefs });
export const about = (): Promise<AboutView> => call('about');
export const openLogs = (): Promise<void> => call('open_logs');
export const startAtLogin = (): Promise<boolean> => call('start_at_login');
export const setStartAtLogin = (enabled: boolean): Promise<void> =>
  call('set_start_at_login', { enabled });

export const books = (query: string | null = null): Promise<Book[]> => call('books', { query });
export const libraryStats = (): Promise<LibraryStats> => call('library_stats');
export const removeBook = (jobId: string): Promise<RemoveReport> => call('remove_book', { jobId });
export const showBookFolder = (jobId: string): Promise<void> => call('show_book_folder', { jobId });
export const playback = (jobId: string): Promise<PlaybackView> => call('playback', { jobId });
export const setPosition = (jobId: string, track: number | null, seconds: number): Promise<void> =>
  call('set_position', { jobId, track, seconds });

export const watchFolders = (): Promise<WatchedFolder[]> => call('watch_folders');
export const addWatchFolder = (request: WatchFolderRequest): Promise<WatchedFolder> =>
  call('add_watch_folder', { request });
export const removeWatchFolder = (path: string): Promise<void> => call('remove_watch_folder', { path });
export const pauseWatch = (path: string | null, paused: boolean): Promise<void> =>
  call('pause_watch', { path, paused });
export const watchActivity = (limit = 200): Promise<Activity[]> => call('watch_activity', { limit });

export const download = (jobId: string, choice: DownloadChoice = 'all'): Promise<EnqueueReport> =>
  call('download', { jobId, choice });
export const downloadList = (): Promise<DownloadItem[]> => call('download_list');
export const downloadAction = (id: number, action: TransferAction): Promise<void> =>
  call('download_action', { id, action });
export const syncLibrary = (): Promise<SyncReport> => call('sync_library');
/** Verifies the library; answers the download rows queued again. */
export const repairLibrary = (): Promise<number[]> => call('repair_library');
/** Tells the shell the first real screen is on screen (logged for the startup benchmark). */
export const uiReady = (screen: 'sign_in' | 'main'): Promise<void> => call('ui_ready', { screen });

/** Calls `handler` with every core event until the returned function is called. */
export function onCoreEvent(handler: (event: CoreEvent) => void): Promise<UnlistenFn> {
  return listen<CoreEvent>(CORE_EVENT, (e) => handler(e.payload));
}

/** Calls `handler` whenever a notification's button asks the app to show something. */
export function onAlertFollowUp(handler: (followUp: AlertFollowUp) => void): Promise<UnlistenFn> {
  return listen<AlertFollowUp>(ALERT_FOLLOW_UP, (e) => handler(e.payload));
}

/** The message of anything thrown, for showing. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
