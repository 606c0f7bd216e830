import { Global, Module, RequestMethod, type MiddlewareConsumer, type NestModule } from '@nestjs/common';

import { AuthController } from './auth.controller';
import { AuthGuard } from './auth.guard';
import { AuthService } from './auth.service';
import { OidcService } from './oidc.service';
import { RequireSignInMiddleware } from './require-sign-in.middleware';
import { SessionRefreshMiddleware } from './session-refresh.middleware';

@Global()
@Module({
  controllers: [AuthController],
  providers: [AuthService, AuthGuard, OidcService],
  exports: [AuthService, AuthGuard],
})
export class AuthModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply(SessionRefreshMiddleware, RequireSignInMiddleware)
      .forRoutes({ path: '{*splat}', method: RequestMethod.ALL });
  }
}
