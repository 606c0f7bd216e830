import { Module } from '@nestjs/common';

import type { ServerConfig } from '../config/server-config';
import { SERVER_CONFIG } from '../config/config.module';
import { TerminalModule } from '../terminal/terminal.module';
import { LiveWatchService } from './live-watch.service';
import { RecordingController } from './recording.controller';
import { fileRecordingStore, RECORDING_STORE, RecordingService } from './recording.service';

/** Session recording (asciicast v2), verified replay, and the admins' live watch. */
@Module({
  imports: [TerminalModule],
  controllers: [RecordingController],
  providers: [
    {
      provide: RECORDING_STORE,
      inject: [SERVER_CONFIG],
      useFactory: (c: ServerConfig) => fileRecordingStore(c),
    },
    RecordingService,
    LiveWatchService,
  ],
})
export class RecordingModule {}
