import { OptionalField } from '@periscope/protocol';
import { IsString, MaxLength } from 'class-validator';

/**
 * `POST /api/clusters/{cluster}/shell/sessions`. Which modes the cluster offers is admission's
 * call (after the sign-in and tier checks); here only the shape.
 */
export class OpenShellDto {
  @OptionalField()
  @IsString()
  @MaxLength(32)
  mode?: string;
}
