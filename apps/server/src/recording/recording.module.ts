import { Inject, Logger, Module, type OnApplicationShutdown } from '@nestjs/common';

import type { ServerConfig } from '../config/server-config';
import { SERVER_CONFIG } from '../config/config.module';
import { TerminalModule } from '../terminal/terminal.module';
import { LiveWatchService } from './live-watch.service';
import type { RecordingStore } from './recording-store';
import { RecordingController } from './recording.controller';
import { RECORDING_STORE, recordingStore, RecordingService } from './recording.service';

/** Session recording (asciicast v2), verified replay, and the admins' live watch. */
@Module({
  imports: [TerminalModule],
  controllers: [RecordingController],
  providers: [
    {
      provide: RECORDING_STORE,
      inject: [SERVER_CONFIG],
      // PostgreSQL large objects with PERISCOPE_DATABASE_URL (shared by replicas), else files.
      useFactory: (c: ServerConfig) =>
        recordingStore(c, (err) => {
          new Logger('recording').error(
            { err: err.message },
            'recordings database connection error (the next query reconnects)',
          );
        }),
    },
    RecordingService,
    LiveWatchService,
  ],
})
export class RecordingModule implements OnApplicationShutdown {
  constructor(@Inject(RECORDING_STORE) private readonly store: RecordingStore) {}

  /** Releases the store's database connections (sessions were closed before: beforeApplicationShutdown). */
  async onApplicationShutdown(): Promise<void> {
    await this.store.close?.();
  }
}
